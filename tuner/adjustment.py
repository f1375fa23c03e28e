"""Trials made comparable: each trial's split losses adjusted for how hard its splits are.

Every trial is scored on its own random splits, and a split's difficulty is shared by every
model: on the course's data, the error of the difference between two networks' 2-split means is
0.055 on independent splits, most of it the splits' difficulty, against real differences of
0.01 to 0.02. The baseline of `difficulty.py` (a logistic regression, or ridge for regression)
fitted on each of a trial's splits measures that difficulty, and each split loss becomes

    adjusted_i = loss_i - slope * (baseline_i - reference)

with the slope the pooled within-trial least-squares slope of split loss on baseline loss over
the study's sound trials (`difficulty.slope`, clipped to [0, 2]; none below `MIN_DOF` degrees
of freedom within trials, 8 trials of 2 splits, before which plain means are compared) and the
reference the mean of every trial's baseline losses, so adjusted losses stay on the scale of
plain ones. That error falls to 0.024 (course) and 0.018 (penguins). The optimiser, the ranking
of trials, racing and the choice of finalists all read trials through `comparable`; the stored
split losses stay as measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from tuner.difficulty import slope
from tuner.records import TrialRecord, TrialState

# A trial whose loss is over this many times its baseline's is broken (diverging, say): its
# split losses do not follow the splits' difficulty and would only blur the slope.
SOUND_RATIO = 1.5
# Within-trial degrees of freedom (split pairs less trials) below which no slope is fitted.
MIN_DOF = 8
# Trials on one seed's splits from which those splits' effects are taken from the trials.
MIN_SHARED = 3


@dataclass(frozen=True)
class Adjustment:
    """How a study's split losses are adjusted: the slope and the baseline's reference mean for
    a trial's own splits, and each shared split's effect for trials that share their splits."""

    slope: float  # 0.0 while the own splits give none
    reference: float
    pairs: int  # the own-split pairs the slope was fitted on
    # Per seed whose splits several trials share (`comparison: common`): each shared split's
    # mean loss over those trials, less the mean over the shared splits.
    shared: Mapping[int, tuple[float, ...]] = field(default_factory=dict)

    def split_losses(
        self, losses: Sequence[float], baselines: Sequence[float], seed: int
    ) -> tuple[float, ...]:
        """A shared split's loss less its effect; an own split's loss less the slope times its
        baseline's distance from the reference."""
        effects = self.shared.get(seed, ())
        return tuple(
            float(x - effects[i])
            if i < len(effects)
            else float(x - self.slope * (b - self.reference))
            for i, (x, b) in enumerate(zip(losses, baselines, strict=True))
        )

    def loss(self, losses: Sequence[float], baselines: Sequence[float], seed: int) -> float:
        """The mean adjusted split loss."""
        return float(np.mean(self.split_losses(losses, baselines, seed)))

    def record(self, trial: TrialRecord) -> TrialRecord:
        """The trial with adjusted split losses, their mean and spread; the plain mean kept as
        `raw_loss`."""
        adjusted = self.split_losses(trial.split_losses, trial.baselines, trial.seed)
        spread = float(np.std(adjusted, ddof=1)) if len(adjusted) > 1 else 0.0
        return replace(
            trial,
            loss=float(np.mean(adjusted)),
            loss_std=spread,
            split_losses=adjusted,
            raw_loss=trial.loss,
        )


def aligned(trial: TrialRecord) -> bool:
    """A completed trial with a finite baseline loss for each of its finite split losses."""
    values = (*trial.split_losses, *trial.baselines)
    return (
        trial.state == TrialState.COMPLETE
        and trial.loss is not None
        and len(trial.baselines) == len(trial.split_losses) > 0
        and all(v is not None and math.isfinite(v) for v in values)
    )


def _sound(trial: TrialRecord) -> bool:
    return trial.loss <= SOUND_RATIO * float(np.mean(trial.baselines))  # type: ignore[operator]


def _own_splits(trial: TrialRecord) -> int:
    """How many of its splits are the trial's own seed's (the rest are racing rounds)."""
    count, rest = divmod(len(trial.split_losses), 1 + len(trial.race_seeds))
    return count if rest == 0 else len(trial.split_losses)


def _shared(usable: Sequence[TrialRecord]) -> dict[int, tuple[float, ...]]:
    """Each shared split's effect, per seed that at least `MIN_SHARED` trials share: its mean
    loss over the sound ones (all, if none is) less the mean over those splits."""
    groups: dict[int, list[TrialRecord]] = {}
    for trial in usable:
        groups.setdefault(trial.seed, []).append(trial)
    shared = {}
    for seed, group in groups.items():
        if len(group) >= MIN_SHARED:
            count = min(_own_splits(t) for t in group)
            sound = [t for t in group if _sound(t)] or group
            means = np.mean([t.split_losses[:count] for t in sound], axis=0)
            shared[seed] = tuple(float(x) for x in means - means.mean())
    return shared


def fit(trials: Sequence[TrialRecord]) -> Adjustment | None:
    """The study's adjustment, or None when there is nothing to adjust by: no splits shared
    and no slope (fewer than `MIN_DOF` degrees of freedom within the sound trials' own splits,
    no baselines, or a slope of 0)."""
    usable = [t for t in trials if aligned(t)]
    shared = _shared(usable)
    own = [
        (t.split_losses[skip:], t.baselines[skip:])
        for t in usable
        if _sound(t)
        for skip in [len(shared.get(t.seed, ()))]
        if len(t.split_losses) - skip >= 2
    ]
    found, pairs, _ = slope(own)
    if pairs - len(own) < MIN_DOF:
        found = 0.0
    if found == 0.0 and not shared:
        return None
    if shared:  # own splits go on the scale of the splits most trials share
        seed = max(shared, key=lambda k: sum(t.seed == k for t in usable))
        first = next(t for t in usable if t.seed == seed)
        reference = float(np.mean(first.baselines[: len(shared[seed])]))
    else:
        reference = float(np.mean([b for t in usable for b in t.baselines]))
    return Adjustment(found, reference, pairs, shared)


def comparable(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials with the study's adjustment applied to every aligned one (`Adjustment.record`);
    unchanged when none can be fitted, or when they are adjusted already."""
    if any(t.raw_loss is not None for t in trials):
        return list(trials)
    found = fit(trials)
    if found is None:
        return list(trials)
    return [found.record(t) if aligned(t) else t for t in trials]

"""Trials made comparable: each trial's split losses adjusted for how hard its splits are.

Every trial is scored on its own random splits, and a split's difficulty is shared by every
model: on the course's data, the error of the difference between two networks' 2-split means is
0.055 on independent splits, most of it the splits' difficulty, against real differences of
0.01 to 0.02. The baseline of `difficulty.py` (a logistic regression, or ridge for regression)
fitted on each of a trial's splits measures that difficulty, and each of a trial's own splits'
losses becomes

    adjusted_i = loss_i - slope * (baseline_i - reference)

with the slope the pooled within-trial least-squares slope of split loss on baseline loss over
the sound trials' own splits (`difficulty.slope`, clipped to [0, 2]; none below `MIN_DOF`
degrees of freedom, 8 trials of 2 splits). That error falls to 0.024 (course), 0.018
(penguins).

Splits that several trials share (`search.comparison: common`: every trial on one seed's
splits) need no baseline: each shared split's effect is the trials' own mean loss on it (less
the mean over the shared splits; leave-one-out for a trial that counts in it, so its noise is
not understated), and the reference is the baseline's mean on them. A raced trial's rounds are
its own splits: adjusted as above, then moved by the group's offset, the mean over its raced
trials of (shared-split mean - adjusted round mean), which puts the rounds on the shared
splits' scale whatever the baseline misses. Another group of shared splits (a warm start from
another study) is moved onto the main group's scale by the slope times their baselines'
difference.

The optimiser, the ranking of trials, racing and the choice of finalists read trials through
`comparable`; the stored split losses stay as measured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from tuner.study.records import TrialRecord, TrialState
from tuner.training.difficulty import slope

# A trial whose loss is over this many times its baseline's (or, without baselines, the median
# trial's) is broken (diverging, say): it would only blur the slope and the shared effects.
SOUND_RATIO = 1.5
# Within-trial degrees of freedom (split pairs less trials) below which no slope is fitted.
MIN_DOF = 8
# Trials on one seed's splits from which those splits' effects are taken from the trials.
MIN_SHARED = 3


@dataclass(frozen=True)
class Group:
    """Trials that share one seed's first `count` splits: the sums of the sound ones' losses
    on them, who those are, the rounds' offset and the shift onto the main group's scale."""

    count: int
    sums: tuple[float, ...]
    members: frozenset[int]  # trial ids
    offset: float = 0.0
    shift: float = 0.0

    def effects(self, losses: np.ndarray, trial_id: int | None) -> np.ndarray:
        """Each shared split's effect; leave-one-out for a member."""
        sums, m = np.asarray(self.sums), len(self.members)
        if trial_id in self.members and m > 1:
            sums, m = sums - losses[: self.count], m - 1
        means = sums / m
        return means - means.mean()


@dataclass(frozen=True)
class Adjustment:
    """How a study's split losses are adjusted: the slope and the baseline's reference for own
    splits, and the groups of trials that share splits."""

    slope: float  # 0.0 while the own splits give none
    reference: float
    pairs: int  # the own-split pairs the slope was fitted on
    groups: Mapping[int, Group] = field(default_factory=dict)  # by seed
    main: int | None = None  # the seed of the group whose splits set the scale

    @cached_property
    def level_variance(self) -> float:
        """The variance of the scale's own level: with shared splits, every adjusted loss is at
        the main group's splits' difficulty, which differs from typical splits' by their mean
        effect (variance: the effects' variance over their count; the trials' noise in the
        effects makes it a little larger). 0 without shared splits: the reference is then the
        baseline's mean over every split."""
        group = self.groups.get(self.main) if self.main is not None else None
        if group is None or group.count < 2:
            return 0.0
        return float(np.var(group.sums, ddof=1)) / len(group.members) ** 2 / group.count

    def split_losses(
        self,
        losses: Sequence[float],
        baselines: Sequence[float],
        seed: int,
        trial_id: int | None = None,
    ) -> tuple[float, ...]:
        """A trial's adjusted split losses (`trial_id` None: a score not yet stored)."""
        x = np.asarray(losses, dtype="float64")
        out = x.copy()
        if len(baselines) == len(x):
            out -= self.slope * (np.asarray(baselines, dtype="float64") - self.reference)
        group = self.groups.get(seed)
        if group is not None and len(x) >= group.count:
            out[: group.count] = x[: group.count] - group.effects(x, trial_id)
            out[group.count :] += group.offset
            out -= group.shift
        return tuple(float(v) for v in out)

    def loss(self, losses: Sequence[float], baselines: Sequence[float], seed: int) -> float:
        """The mean adjusted split loss of a score not yet stored."""
        return float(np.mean(self.split_losses(losses, baselines, seed)))

    def record(self, trial: TrialRecord) -> TrialRecord:
        """The trial with adjusted split losses, their mean and spread; the plain mean and
        split losses kept as `raw_loss` and `raw_split_losses`."""
        adjusted = self.split_losses(trial.split_losses, trial.baselines, trial.seed, trial.id)
        spread = float(np.std(adjusted, ddof=1)) if len(adjusted) > 1 else 0.0
        return replace(
            trial,
            loss=float(np.mean(adjusted)),
            loss_std=spread,
            split_losses=adjusted,
            raw_loss=trial.loss,
            raw_split_losses=trial.split_losses,
            level_var=self.level_variance,
        )


def scored(trial: TrialRecord) -> bool:
    """A completed trial whose split losses are all finite."""
    return (
        trial.state == TrialState.COMPLETE
        and trial.loss is not None
        and len(trial.split_losses) > 0
        and all(v is not None and math.isfinite(v) for v in trial.split_losses)
    )


def aligned(trial: TrialRecord) -> bool:
    """A scored trial with a finite baseline loss for each split."""
    return (
        scored(trial)
        and len(trial.baselines) == len(trial.split_losses)
        and all(v is not None and math.isfinite(v) for v in trial.baselines)
    )


def _own_splits(trial: TrialRecord) -> int:
    """How many of its splits are its seed's (the rest are racing rounds of as many each)."""
    count, rest = divmod(len(trial.split_losses), 1 + len(trial.race_seeds))
    return count if rest == 0 else len(trial.split_losses)


def fit(trials: Sequence[TrialRecord]) -> Adjustment | None:
    """The study's adjustment, or None when there is nothing to adjust by: no splits shared
    and no slope (fewer than `MIN_DOF` degrees of freedom within the sound trials' own splits,
    no baselines, or a slope of 0)."""
    usable = [t for t in trials if scored(t)]
    median = float(np.median([t.loss for t in usable])) if usable else 0.0
    sound = {t.id for t in usable if _is_sound(t, median)}
    counts = _shared_counts(usable)
    own = [
        (t.split_losses[skip:], t.baselines[skip:])
        for t in usable
        if aligned(t) and t.id in sound
        for skip in [counts.get(t.seed, 0)]
        if len(t.split_losses) - skip >= 2
    ]
    found, pairs, _ = slope(own)
    if pairs - len(own) < MIN_DOF:
        found = 0.0
    if found == 0.0 and not counts:
        return None
    main = max(counts, key=lambda s: (sum(t.seed == s for t in usable), s)) if counts else None
    reference = _reference(usable, counts, main)
    groups = {
        seed: _group(seed, count, usable, sound, found, reference) for seed, count in counts.items()
    }
    groups = _shifted(groups, usable, found, reference, main)
    return Adjustment(found, reference, pairs, groups, main)


def _is_sound(trial: TrialRecord, median: float) -> bool:
    if aligned(trial):
        return trial.loss <= SOUND_RATIO * float(np.mean(trial.baselines))  # type: ignore[operator]
    return trial.loss <= SOUND_RATIO * median  # type: ignore[operator]


def _shared_counts(usable: Sequence[TrialRecord]) -> dict[int, int]:
    """Shared splits per seed that at least `MIN_SHARED` trials share."""
    by_seed: dict[int, list[TrialRecord]] = {}
    for trial in usable:
        by_seed.setdefault(trial.seed, []).append(trial)
    return {
        seed: min(_own_splits(t) for t in group)
        for seed, group in by_seed.items()
        if len(group) >= MIN_SHARED
    }


def _shared_level(usable: Sequence[TrialRecord], seed: int, count: int) -> float | None:
    """The baseline's mean on a seed's first `count` splits (None: no trial measured it)."""
    for trial in usable:
        if trial.seed == seed and aligned(trial):
            return float(np.mean(trial.baselines[:count]))
    return None


def _reference(usable: Sequence[TrialRecord], counts: Mapping[int, int], main: int | None) -> float:
    """The baseline's mean on the splits the most trials share (`main`), else on every split."""
    level = _shared_level(usable, main, counts[main]) if main is not None else None
    if level is not None:
        return level
    values = [b for t in usable if aligned(t) for b in t.baselines]
    return float(np.mean(values)) if values else 0.0


def _group(
    seed: int,
    count: int,
    usable: Sequence[TrialRecord],
    sound: set[int],
    found: float,
    reference: float,
) -> Group:
    """The shared splits' sums over the group's sound trials (all, if none is) and the rounds'
    offset from its sound raced trials."""
    trials = [t for t in usable if t.seed == seed]
    members = [t for t in trials if t.id in sound] or trials
    sums = np.sum([t.split_losses[:count] for t in members], axis=0)
    bare = Group(count, tuple(float(v) for v in sums), frozenset(t.id for t in members))
    gaps = []
    for trial in members:
        if len(trial.split_losses) > count:
            rounds = np.asarray(trial.split_losses[count:])
            if aligned(trial):
                rounds = rounds - found * (np.asarray(trial.baselines[count:]) - reference)
            gaps.append(float(np.mean(trial.split_losses[:count]) - np.mean(rounds)))
    return replace(bare, offset=float(np.mean(gaps)) if gaps else 0.0)


def _shifted(
    groups: dict[int, Group],
    usable: Sequence[TrialRecord],
    found: float,
    reference: float,
    main: int | None,
) -> dict[int, Group]:
    """Every group but the main one moved onto the main one's scale by its baselines."""
    if len(groups) < 2 or found == 0.0:
        return groups
    for seed, group in groups.items():
        level = _shared_level(usable, seed, group.count)
        if seed != main and level is not None:
            groups[seed] = replace(group, shift=found * (level - reference))
    return groups


def comparable(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials with the study's adjustment applied to every scored one
    (`Adjustment.record`); unchanged when none can be fitted, or when adjusted already."""
    if any(t.raw_loss is not None for t in trials):
        return list(trials)
    return applied(trials, fit(trials))


def applied(trials: Sequence[TrialRecord], found: Adjustment | None) -> list[TrialRecord]:
    """The trials with an adjustment fitted already (`fit`) applied to every scored one."""
    if found is None:
        return list(trials)
    return [found.record(t) if scored(t) else t for t in trials]

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
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from tuner.difficulty import slope
from tuner.records import TrialRecord, TrialState

# A trial whose loss is over this many times its baseline's is broken (diverging, say): its
# split losses do not follow the splits' difficulty and would only blur the slope.
SOUND_RATIO = 1.5
# Within-trial degrees of freedom (split pairs less trials) below which no slope is fitted.
MIN_DOF = 8


@dataclass(frozen=True)
class Adjustment:
    """How a study's split losses are adjusted: the slope and the baseline's reference mean."""

    slope: float
    reference: float
    pairs: int  # the pairs the slope was fitted on

    def split_losses(
        self, losses: Sequence[float], baselines: Sequence[float]
    ) -> tuple[float, ...]:
        """Each split loss less the slope times its baseline's distance from the reference."""
        return tuple(
            float(x - self.slope * (b - self.reference))
            for x, b in zip(losses, baselines, strict=True)
        )

    def loss(self, losses: Sequence[float], baselines: Sequence[float]) -> float:
        """The mean adjusted split loss."""
        return float(np.mean(self.split_losses(losses, baselines)))

    def record(self, trial: TrialRecord) -> TrialRecord:
        """The trial with adjusted split losses, their mean and spread; the plain mean kept as
        `raw_loss`."""
        adjusted = self.split_losses(trial.split_losses, trial.baselines)
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


def fit(trials: Sequence[TrialRecord]) -> Adjustment | None:
    """The study's adjustment, or None while it cannot be fitted (fewer than `MIN_DOF` degrees
    of freedom within sound trials, no baselines, or no slope)."""
    usable = [t for t in trials if aligned(t)]
    sound = [t for t in usable if t.loss <= SOUND_RATIO * float(np.mean(t.baselines))]  # type: ignore[operator]
    found, pairs, _ = slope([(t.split_losses, t.baselines) for t in sound])
    if pairs - sum(len(t.split_losses) > 1 for t in sound) < MIN_DOF or found == 0.0:
        return None
    reference = float(np.mean([b for t in usable for b in t.baselines]))
    return Adjustment(found, reference, pairs)


def comparable(trials: Sequence[TrialRecord]) -> list[TrialRecord]:
    """The trials with the study's adjustment applied to every aligned one (`Adjustment.record`);
    unchanged when none can be fitted, or when they are adjusted already."""
    if any(t.raw_loss is not None for t in trials):
        return list(trials)
    found = fit(trials)
    if found is None:
        return list(trials)
    return [found.record(t) if aligned(t) else t for t in trials]

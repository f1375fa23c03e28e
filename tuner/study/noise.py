"""The noise of a trial's mean loss: what the optimiser is told and how finalists are ranked."""

import math
from collections.abc import Sequence

from tuner.study.store import TrialRecord, TrialState

# The least noise variance of a mean loss (a standard deviation of 0.001).
NOISE_FLOOR = 1e-6
# How many splits' worth of weight the pooled variance has against a trial's own: two splits
# give one degree of freedom, too few to trust alone.
PRIOR_DOF = 4.0


def finite_splits(trial: TrialRecord) -> list[float]:
    """A trial's split losses that are numbers (a diverged split's may be NaN or infinite)."""
    return [float(v) for v in trial.split_losses if v is not None and math.isfinite(v)]


def variance(values: Sequence[float]) -> float:
    """The sample variance (n - 1 in the denominator) of two or more values."""
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def pooled_variance(trials: Sequence[TrialRecord]) -> float | None:
    """The variance of one split's loss, pooled over completed trials with two or more splits."""
    total, dof = 0.0, 0
    for trial in trials:
        losses = finite_splits(trial) if trial.state == TrialState.COMPLETE else []
        if len(losses) >= 2:
            total += variance(losses) * (len(losses) - 1)
            dof += len(losses) - 1
    return total / dof if dof else None


def mean_noise(trial: TrialRecord, pooled: float) -> float:
    """The noise variance of a trial's mean: its split variance moderated by the pooled one."""
    losses = finite_splits(trial)
    n, moderated = len(losses), pooled
    if n >= 2:
        moderated = (PRIOR_DOF * pooled + (n - 1) * variance(losses)) / (PRIOR_DOF + n - 1)
    return max(moderated / max(n, 1), NOISE_FLOOR)

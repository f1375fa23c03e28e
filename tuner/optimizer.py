"""Proposing points with bayes_opt, driven by ask/tell from the stored trials.

The optimiser is rebuilt from the study's trials for every proposal, so what it knows is
exactly what the database holds: a resumed search and a fresh one see the same history.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from bayes_opt import BayesianOptimization, acquisition

from tuner.config import AcquisitionConfig, SearchConfig
from tuner.space import Coordinate, SearchSpace
from tuner.store import TrialRecord, TrialState

Point = dict[str, Coordinate]


def _acquisition(cfg: AcquisitionConfig, seed: int) -> acquisition.AcquisitionFunction:
    if cfg.kind == "ucb":
        return acquisition.UpperConfidenceBound(kappa=cfg.kappa, random_state=seed)
    if cfg.kind == "ei":
        return acquisition.ExpectedImprovement(xi=cfg.xi, random_state=seed)
    return acquisition.ProbabilityOfImprovement(xi=cfg.xi, random_state=seed)


def _clean(point: dict[str, Any]) -> Point:
    """bayes_opt hands out numpy scalars; stored points are plain floats and strings."""
    return {k: v if isinstance(v, str) else float(v) for k, v in point.items()}


def observations(trials: Sequence[TrialRecord], liar: str = "mean") -> list[tuple[Point, float]]:
    """What the optimiser is told: each finished point with the value to maximise.

    A completed trial gives its negated loss. A failed trial (diverged, say) gives the worst
    negated loss seen so far, so the optimiser learns that region is bad without a NaN or an
    infinity reaching the Gaussian process; so does a point whose worker process died, until
    a retry of it speaks for it. Interrupted and stale trials say nothing about their point.
    A running trial (another worker's) gets a stand-in value, the "constant liar": the mean
    (`liar: mean`) or the worst (`liar: worst`) of the observed values, so that parallel
    workers are not sent to the same place. Repeated points are merged by averaging.
    """
    completed = [
        -float(t.loss) for t in trials if t.state == TrialState.COMPLETE and t.loss is not None
    ]
    if not completed:
        return []
    worst = min(completed)
    lie = worst if liar == "worst" else float(np.mean(completed))
    retried = {t.retry_of for t in trials if t.retry_of is not None}
    merged: dict[tuple[tuple[str, Coordinate], ...], list[float]] = {}
    points: dict[tuple[tuple[str, Coordinate], ...], Point] = {}
    for trial in trials:
        if trial.state == TrialState.COMPLETE and trial.loss is not None:
            target = -float(trial.loss)
        elif trial.state == TrialState.RUNNING:
            target = lie
        elif trial.counts or (trial.error_kind == "died" and trial.number not in retried):
            target = worst
        else:
            continue
        key = tuple(sorted(trial.point.items()))
        merged.setdefault(key, []).append(target)
        points[key] = dict(trial.point)
    return [(points[key], float(np.mean(values))) for key, values in merged.items()]


class Proposer:
    """Proposes the k-th point of a search: seeded random ones first, then guided ones."""

    def __init__(self, space: SearchSpace, cfg: SearchConfig) -> None:
        self._space = space
        self._cfg = cfg
        self._initial = [_clean(p) for p in self._fresh(cfg.seed).random_sample(cfg.init_points)]

    def _fresh(self, seed: int) -> BayesianOptimization:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bayes_opt calls choices "experimental"
            return BayesianOptimization(
                f=None,
                pbounds=self._space.pbounds(),
                acquisition_function=_acquisition(self._cfg.acquisition, seed),
                random_state=seed,
                verbose=0,
                allow_duplicate_points=True,
            )

    def propose(self, k: int, history: Sequence[TrialRecord]) -> Point:
        """The k-th proposal, given the trials so far."""
        if not self._space.dimensions:
            return {}
        if k < len(self._initial):
            return dict(self._initial[k])
        optimizer = self._fresh(self._cfg.seed + k)
        with warnings.catch_warnings():
            # sklearn's GP and bayes_opt's "experimental" notice are noise for our users.
            warnings.simplefilter("ignore")
            for point, target in observations(history, self._cfg.liar):
                # The target space's own register: the optimiser's wrapper also logs, and
                # its logging rebuilds the whole result list each call (quadratic in trials).
                optimizer.space.register(point, target)
            return _clean(optimizer.suggest())

"""Proposing points with bayes_opt, rebuilt from the study's trials for every proposal."""

import math
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bayes_opt import BayesianOptimization
from sklearn.gaussian_process.kernels import Kernel, Matern, WhiteKernel
from threadpoolctl import threadpool_limits

from tuner.config.schema import Scalar, SearchConfig
from tuner.config.space import Coordinate, SearchSpace
from tuner.optimize.acquisition import Acquisition, Rows
from tuner.study.noise import NOISE_FLOOR, finite_splits, mean_noise, pooled_variance, variance
from tuner.study.store import TrialRecord, TrialState

Point = dict[str, Coordinate]
# Whether a point's hyperparameters may be trained (a network within evaluation.max_params).
Allowed = Callable[[Mapping[str, Scalar]], bool]

# Restarts of the GP's kernel fit, besides the one from length scale 1 (a unit-scaled space).
GP_RESTARTS = 1
# Random draws per initial point when looking for allowed ones, before giving up on allowed.
INITIAL_DRAWS = 200
# Tukey's upper fence, Q3 + 1.5 IQR of the completed trials' losses, from this many trials on.
FENCE_IQR = 1.5
FENCE_MIN_TRIALS = 4


# One trial's telling: the value to maximise, its noise variance, its splits' seed (None for a
# stand-in).
Told = tuple[float, float | None, int | None]


@dataclass(frozen=True)
class Observation:
    """One point as the optimiser is told it: the value to maximise and its noise variance."""

    point: Point
    target: float
    noise: float | None  # variance of `target`; None when nothing tells it


def _clean(point: dict[str, Any]) -> Point:
    """bayes_opt hands out numpy scalars; stored points are plain floats and strings."""
    return {k: v if isinstance(v, str) else float(v) for k, v in point.items()}


def loss_fence(completed: Sequence[TrialRecord]) -> float:
    """The most a loss is told as (Q3 + 1.5 IQR), so that a diverged loss cannot set the GP's
    scale alone; the IQR is at least a typical split standard deviation."""
    losses = [float(t.loss) for t in completed if t.loss is not None]
    if len(losses) < FENCE_MIN_TRIALS:
        return math.inf
    q1, q3 = np.percentile(losses, [25, 75])
    spreads = [math.sqrt(variance(v)) for t in completed if len(v := finite_splits(t)) >= 2]
    floor = statistics.median(spreads) if spreads else 0.0
    return float(q3 + FENCE_IQR * max(q3 - q1, floor))


def _typical_noise(completed: Sequence[TrialRecord], pooled: float | None) -> float | None:
    """The noise of a typical trial's mean: the pooled split variance over the median splits."""
    if pooled is None:
        return None
    splits = int(statistics.median_low([max(len(finite_splits(t)), 1) for t in completed]))
    return max(pooled / splits, NOISE_FLOOR)


def observed(trials: Sequence[TrialRecord], liar: str = "mean") -> list[Observation]:
    """Each point the optimiser is told, with the value to maximise and its noise.

    A completed trial tells its negated loss (at most the fence) and its mean's noise; a failed
    one, or a dead worker's not yet retried, the worst value told (no NaN reaches the GP); a
    running one the mean or worst value (`liar`), so that workers spread out; interrupted and
    stale ones nothing. Stand-ins get a typical trial's noise; repeated points are merged."""
    completed = [t for t in trials if t.state == TrialState.COMPLETE and t.loss is not None]
    if not completed:
        return []
    fence = loss_fence(completed)
    value = {id(t): -min(float(t.loss), fence) for t in completed}  # type: ignore[arg-type]
    worst = min(value.values())
    lie = worst if liar == "worst" else sum(value.values()) / len(value)
    pooled = pooled_variance(completed)
    typical = _typical_noise(completed, pooled)
    merged: dict[tuple[tuple[str, Coordinate], ...], list[Told]] = {}
    retried = {t.retry_of for t in trials if t.retry_of is not None}
    points: dict[tuple[tuple[str, Coordinate], ...], Point] = {}
    for trial in trials:
        told: Told
        if trial.state == TrialState.COMPLETE and trial.loss is not None:
            noise = None if pooled is None else mean_noise(trial, pooled)
            told = (value[id(trial)], noise, trial.seed)
        elif trial.state == TrialState.RUNNING:
            told = (lie, typical, None)
        elif trial.counts or (trial.error_kind == "died" and trial.number not in retried):
            told = (worst, typical, None)
        else:
            continue
        key = tuple(sorted(trial.point.items()))
        merged.setdefault(key, []).append(told)
        points[key] = dict(trial.point)
    return [_merge(points[key], told) for key, told in merged.items()]


def _merge(point: Point, told: list[Told]) -> Observation:
    """One point told several times: the mean value, and its noise (tellings on one seed share
    their errors, which add as standard deviations)."""
    target = sum(value for value, _, _ in told) / len(told)
    if any(noise is None for _, noise, _ in told):
        return Observation(point, target, None)
    by_seed: dict[int | None, list[float]] = {}
    for _, noise, seed in told:
        by_seed.setdefault(seed, []).append(noise)  # type: ignore[arg-type]
    stand_ins = by_seed.pop(None, [])
    # A lone telling keeps its variance as is: sqrt then square would move it by a rounding.
    shared = [v[0] if len(v) == 1 else sum(map(math.sqrt, v)) ** 2 for v in by_seed.values()]
    noise = (sum(shared) + sum(stand_ins)) / len(told) ** 2
    return Observation(point, target, noise)


def observations(trials: Sequence[TrialRecord], liar: str = "mean") -> list[tuple[Point, float]]:
    """Each point the optimiser is told of, with its value (see `observed`)."""
    return [(o.point, o.target) for o in observed(trials, liar)]


class Proposer:
    """Proposes the k-th point: seeded random ones first, then guided ones, all `allowed`."""

    def __init__(
        self, space: SearchSpace, cfg: SearchConfig, allowed: Allowed | None = None
    ) -> None:
        self._space, self._cfg, self._allowed = space, cfg, allowed
        self._initial = self._initial_points()

    def _initial_points(self) -> list[Point]:
        """The seeded random points; with `allowed`, the first allowed draws, in draw order."""
        optimizer, wanted = self._fresh(self._cfg.seed), self._cfg.init_points
        if self._allowed is None:
            return [_clean(p) for p in optimizer.random_sample(wanted)]
        chosen: list[Point] = []
        refused: list[Point] = []
        for _ in range(INITIAL_DRAWS * wanted):
            if len(chosen) == wanted:
                break
            point = _clean(optimizer.random_sample(1)[0])
            (chosen if self._allowed(self._space.params(point)) else refused).append(point)
        return chosen + refused[: wanted - len(chosen)]  # a space with (almost) none allowed

    def _allowed_rows(self, space: Any) -> Rows | None:
        """`allowed` on rows of bayes_opt arrays, as a boolean per row."""
        allowed = self._allowed
        if allowed is None:
            return None

        def check(rows: np.ndarray) -> np.ndarray:
            points = (_clean(space.array_to_params(row)) for row in np.atleast_2d(rows))
            return np.array([allowed(self._space.params(p)) for p in points], dtype=bool)

        return check

    def _fresh(
        self, seed: int, acquisition: Acquisition | None = None, fitted_noise: bool = False
    ) -> BayesianOptimization:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bayes_opt calls choices "experimental"
            optimizer = BayesianOptimization(
                f=None,
                pbounds=self._space.pbounds(),
                acquisition_function=acquisition or Acquisition(self._cfg.acquisition),
                random_state=seed,
                verbose=0,
                allow_duplicate_points=True,
            )
        # A length scale under 0.05 of a unit range fits noise, not the loss surface: the
        # likelihood has such an optimum, which bayes_opt's bounds (1e-5) let the fit fall in.
        kernel: Kernel = Matern(nu=2.5, length_scale=1.0, length_scale_bounds=(0.05, 20.0))
        if fitted_noise:  # in normalised target units: the GP fits the noise's share
            kernel = kernel + WhiteKernel(noise_level=0.1, noise_level_bounds=(1e-6, 1.0))
        optimizer.set_gp_params(kernel=kernel, normalize_y=True, n_restarts_optimizer=GP_RESTARTS)
        return optimizer

    def optimizer(self, k: int, history: Sequence[TrialRecord]) -> BayesianOptimization:
        """A fresh optimiser for the k-th proposal, told every observation of `history`."""
        found = observed(history, self._cfg.liar)
        noise = None
        known = bool(found) and all(o.noise is not None for o in found)
        if self._cfg.noise == "auto" and known:
            noise = np.array([o.noise for o in found], dtype=float)
        acquisition = Acquisition(self._cfg.acquisition, noise)
        # auto without split variances (one split per trial): the GP fits a noise level.
        fitted = self._cfg.noise == "auto" and not known
        optimizer = self._fresh(self._cfg.seed + k, acquisition, fitted)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for o in found:
                # The target space's own register: the optimiser's also logs, rebuilding the
                # whole result list each call.
                optimizer.space.register(o.point, o.target)
        acquisition.allowed = self._allowed_rows(optimizer.space)
        return optimizer

    def propose(self, k: int, history: Sequence[TrialRecord]) -> Point:
        """The k-th proposal, given the trials so far."""
        if not self._space.dimensions:
            return {}
        if k < len(self._initial):
            return dict(self._initial[k])
        # One BLAS thread: the matrices are small, and threads spinning against a trial's
        # training slow a proposal down.
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's and bayes_opt's notices
            return _clean(self.optimizer(k, history).suggest())

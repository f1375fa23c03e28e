"""Where to look next: a bayes_opt acquisition on a GP told each point's noise, proposing only
allowed, unregistered points, found cheaply (random and local candidates, then a few polishes)."""

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from bayes_opt.acquisition import AcquisitionFunction
from bayes_opt.target_space import TargetSpace
from bayes_opt.util import ensure_rng
from numpy.typing import NDArray
from scipy.linalg import solve_triangular
from scipy.optimize import minimize
from scipy.stats import norm
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor

from tuner.config.schema import AcquisitionConfig

# bayes_opt's own GP alpha: the least jitter on the diagonal, in normalised target units.
MIN_ALPHA = 1e-6
# Random candidates, polishes from the best of them, steps of each, the finite-difference step.
N_RANDOM, N_POLISH, POLISH_STEPS, STEP = 1000, 3, 30, 1e-6
# Candidates around the best observed points: how many points, how many around each, how far.
N_LOCAL_CENTRES, N_LOCAL_EACH, LOCAL_SPREAD = 5, 40, 0.05
# Past this many points the kernel's length scale is fitted on a subset of them.
HYPER_SUBSET = 100
# Two points closer than this in every unit coordinate are the same point.
SAME_POINT = 1e-3
# What the polish sees at a point that is not allowed: far worse than any acquisition value.
NOT_ALLOWED = 1e6

Rows = Callable[[NDArray[Any]], NDArray[Any]]


class Posterior:
    """The GP's mean and std as `predict` gives them, without its costly per-call checks."""

    def __init__(self, gp: GaussianProcessRegressor, y: NDArray[Any]) -> None:
        self._kernel, self._x = gp.kernel_, gp.X_train_
        self._weights, self._cholesky = gp.alpha_, gp.L_
        self._mean, self._scale = float(np.mean(y)), _scale(y)

    def __call__(self, x: NDArray[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
        """Mean and standard deviation at each row of x."""
        cross = self._kernel(x, self._x)
        mean = cross @ self._weights * self._scale + self._mean
        v = solve_triangular(self._cholesky, cross.T, lower=True, check_finite=False)
        variance = self._kernel.diag(x) - np.einsum("ij,ij->j", v, v)
        return mean, np.sqrt(np.maximum(variance, 0.0)) * self._scale


class Acquisition(AcquisitionFunction):
    """ucb, ei or poi on a GP told each point's noise."""

    def __init__(
        self,
        cfg: AcquisitionConfig,
        noise: NDArray[Any] | None = None,
        n_random: int = N_RANDOM,
        n_polish: int = N_POLISH,
    ) -> None:
        super().__init__()
        self.kind, self.kappa, self.xi = cfg.kind, cfg.kappa, cfg.xi
        self.noise = noise  # variance of each registered target, in registration order
        self.n_random, self.n_polish = n_random, n_polish
        self.allowed: Rows | None = None  # rows -> whether each may be proposed
        self.incumbent: float | None = None
        self.gp: GaussianProcessRegressor | None = None  # the GP as last fitted
        self.posterior: Posterior | None = None

    def base_acq(self, mean: NDArray[Any], std: NDArray[Any]) -> NDArray[Any]:
        """The plain acquisition value (to maximise) from the GP's mean and std."""
        if self.kind == "ucb":
            return mean + self.kappa * std
        std = np.maximum(std, 1e-12)
        margin = mean - (self.incumbent or 0.0) - self.xi
        z = margin / std
        return margin * norm.cdf(z) + std * norm.pdf(z) if self.kind == "ei" else norm.cdf(z)

    def score(self, x: NDArray[Any]) -> NDArray[Any]:
        """The value to minimise at each row of x (bayes_opt arrays)."""
        assert self.posterior is not None, "fit the GP first"
        mean, std = self.posterior(np.atleast_2d(x))
        return -self.base_acq(mean, std)

    def fit(self, gp: GaussianProcessRegressor, space: TargetSpace) -> None:
        """Fit the GP to the registered points with their noise (the kernel on a subset of many)."""
        x, y = space.params, space.target
        if self.noise is not None and len(self.noise) != len(y):
            raise ValueError(f"{len(self.noise)} noise values for {len(y)} points")
        if len(y) > HYPER_SUBSET:
            subset = np.linspace(0, len(y) - 1, HYPER_SUBSET).round().astype(int)
            sub = clone(gp).set_params(alpha=self._alpha(subset, y[subset]))
            _fit(sub, x[subset], y[subset])
            gp.set_params(kernel=sub.kernel_, optimizer=None)
        gp.set_params(alpha=self._alpha(slice(None), y))
        _fit(gp, x, y)
        self.gp, self.posterior = gp, Posterior(gp, y)
        # With noise, the best observed value is mostly luck.
        self.incumbent = float(np.max(self.posterior(x)[0]))

    def _alpha(self, rows: Any, y: NDArray[Any]) -> float | NDArray[Any]:
        """The GP's alpha for these rows: their noise variance over the targets' variance."""
        if self.noise is None:
            return MIN_ALPHA
        return np.maximum(self.noise[rows] / _scale(y) ** 2, MIN_ALPHA)

    def suggest(
        self,
        gp: GaussianProcessRegressor,
        target_space: TargetSpace,
        n_random: int | None = None,
        n_smart: int | None = None,
        fit_gp: bool = True,
        random_state: int | np.random.RandomState | None = None,
    ) -> NDArray[Any]:
        """The next point to probe, as a bayes_opt array (called by its `suggest()`)."""
        rng = ensure_rng(random_state)
        self.i += 1
        if fit_gp or self.posterior is None:
            self.fit(gp, target_space)
        randoms = target_space.random_sample(n_random or self.n_random, random_state=rng)
        candidates = np.vstack([randoms, self._near_best(target_space, rng)])
        candidates = self._eligible(candidates, target_space)
        values = self.score(candidates)
        best, best_value = candidates[np.argmin(values)], float(np.min(values))
        for start in candidates[np.argsort(values)[: n_smart or self.n_polish]]:
            x, value = self._polish(start, target_space)
            if value < best_value and len(self._eligible(x[None, :], target_space, False)):
                best, best_value = x, value
        return np.clip(best, target_space.bounds[:, 0], target_space.bounds[:, 1])

    def _eligible(
        self, rows: NDArray[Any], space: TargetSpace, fall_back: bool = True
    ) -> NDArray[Any]:
        """The rows allowed and not registered; with `fall_back`, all rows when none is."""
        keep = np.ones(len(rows), dtype=bool)
        if len(space.params):
            gaps = np.abs(rows[:, None, :] - space.params[None, :, :]).max(axis=2)
            keep &= gaps.min(axis=1) > SAME_POINT
        if self.allowed is not None:
            keep[keep] = self.allowed(rows[keep])
        return rows[keep] if keep.any() or not fall_back else rows

    def _near_best(self, space: TargetSpace, rng: np.random.RandomState) -> NDArray[Any]:
        """Candidates scattered around the observed points with the best targets."""
        order = np.argsort(space.target)[::-1][:N_LOCAL_CENTRES]
        centres = np.repeat(space.params[order], N_LOCAL_EACH, axis=0)
        continuous = space.continuous_dimensions
        low, high = space.bounds[:, 0], space.bounds[:, 1]
        step = rng.normal(0.0, LOCAL_SPREAD, centres.shape) * (high - low) * continuous
        return np.clip(centres + step, low, high)

    def _polish(self, start: NDArray[Any], space: TargetSpace) -> tuple[NDArray[Any], float]:
        """L-BFGS-B over the continuous coordinates from `start`, choices held fixed."""
        mask = space.continuous_dimensions
        if not np.any(mask):
            return start, float(self.score(start)[0])
        low, high = space.bounds[mask, 0], space.bounds[mask, 1]

        def value_and_gradient(values: NDArray[Any]) -> tuple[float, NDArray[Any]]:
            # Forward differences, all in one prediction.
            step = np.where(values + STEP <= high, STEP, -STEP)
            rows = np.repeat(start[None, :], len(values) + 1, axis=0)
            rows[:, mask] = values
            rows[1:, mask] += np.diag(step)
            scores = self.score(rows)
            if self.allowed is not None:
                scores = np.where(self.allowed(rows), scores, NOT_ALLOWED)
            return float(scores[0]), (scores[1:] - scores[0]) / step

        found = minimize(
            value_and_gradient, start[mask], jac=True, bounds=list(zip(low, high, strict=True)),
            method="L-BFGS-B", options={"maxiter": POLISH_STEPS},
        )  # fmt: skip
        x = start.copy()
        x[mask] = np.clip(found.x, low, high)
        return x, float(self.score(x)[0])

    def get_acquisition_params(self) -> dict[str, Any]:
        return {"kind": self.kind, "kappa": self.kappa, "xi": self.xi}

    def set_acquisition_params(self, params: dict[str, Any]) -> None:
        self.kind, self.kappa, self.xi = params["kind"], params["kappa"], params["xi"]


def _fit(gp: GaussianProcessRegressor, x: NDArray[Any], y: NDArray[Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's convergence notes
        gp.fit(x, y)


def _scale(y: NDArray[Any]) -> float:
    """What normalize_y divides the targets by: their std, or 1 when they are all equal."""
    scale = float(np.std(y))
    return scale if scale > 10 * np.finfo(float).eps else 1.0

"""What a trial is expected to cost: its seconds, modelled from the study's completed trials.

A ridge regression of log seconds on the optimiser's coordinates (after the search GP's own
kernel transform: choices one-hot), their squares and their pairwise products, with the ridge
penalty chosen by leave-one-out. A trial's time grows with its network (neuron_pct and
neuron_shrink give the layers) and with its epochs, smoothly and mostly one way, which a
quadratic surface in log space follows; it costs a millisecond where a second Gaussian process
cost a noticeable part of a short trial. Predictions stay within a factor of 3 of the seconds
seen, so the model never extrapolates into absurd costs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.linear_model import RidgeCV

# Fewer completed trials than this say too little about cost: no model, no preference.
MIN_TRIALS = 5
MARGIN = 3.0
PENALTIES = np.logspace(-3, 3, 13)

Transform = Callable[[NDArray[Any]], NDArray[Any]]


class CostModel:
    """Expected seconds of a trial at an optimiser point, and relative to a typical trial."""

    def __init__(
        self,
        ridge: RidgeCV,
        transform: Transform,
        seconds_range: tuple[float, float],
        typical: float,
    ) -> None:
        self._coef, self._intercept = ridge.coef_, float(ridge.intercept_)
        self._transform = transform
        self._log_range = (np.log(seconds_range[0] / MARGIN), np.log(seconds_range[1] * MARGIN))
        self.typical = typical  # median seconds of the trials it learnt from

    @classmethod
    def fit(
        cls, points: NDArray[Any], seconds: NDArray[Any], transform: Transform
    ) -> CostModel | None:
        """A model of `seconds` at `points` (rows of bayes_opt arrays); None with too few."""
        keep = np.isfinite(seconds) & (seconds > 0)
        points, seconds = points[keep], seconds[keep]
        if len(seconds) < MIN_TRIALS:
            return None
        x = quadratic(transform(points))
        ridge = RidgeCV(alphas=PENALTIES)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ridge.fit(x, np.log(seconds))
        span = (float(seconds.min()), float(seconds.max()))
        return cls(ridge, transform, span, float(np.median(seconds)))

    def seconds(self, points: NDArray[Any]) -> NDArray[Any]:
        """Expected seconds at each row of `points`."""
        log_seconds = quadratic(self._transform(np.atleast_2d(points))) @ self._coef
        return np.exp(np.clip(log_seconds + self._intercept, *self._log_range))

    def relative(self, points: NDArray[Any]) -> NDArray[Any]:
        """Expected seconds at each row of `points` over the typical trial's seconds."""
        return self.seconds(points) / self.typical


def quadratic(x: NDArray[Any]) -> NDArray[Any]:
    """The columns of x, their squares and their pairwise products."""
    i, j = np.triu_indices(x.shape[1])
    return np.hstack([x, x[:, i] * x[:, j]])

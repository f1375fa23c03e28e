"""The proposers that benchmarks/search_quality.py drives by ask/tell, and the course's evaluation.

Each sampler proposes full parameter sets (searched and fixed) and is told each one's loss, or
None when the trial failed. None of them knows how a point is scored.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tuner.config.schema import Config, Scalar
from tuner.config.space import SearchSpace
from tuner.errors import TrialFailed
from tuner.training.data import Dataset
from tuner.training.evaluate import Score

COURSE_POINT = {"dropout": 0.2, "learning_rate": 1e-3, "neuron_pct": 0.2, "neuron_shrink": 0.2}
COURSE_INIT_POINTS = 10  # the course's maximize(init_points=10, ...)


class RandomSampler:
    """Uniform in tuner's scaled space: log ranges uniform in log space, choices uniform."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        self._space = space
        self._rng = np.random.default_rng(seed)

    def ask(self) -> dict[str, Scalar]:
        point: dict[str, float | str] = {}
        for d in self._space.dimensions:
            if d.param.kind == "choice":
                point[d.name] = str(self._rng.choice(list(d.bounds)))
            else:
                point[d.name] = float(self._rng.uniform())
        return self._space.params(point)

    def tell(self, loss: float | None, message: str) -> None:
        pass


class OptunaSampler:
    """Optuna's TPE sampler with its defaults, through ask/tell (a failed trial: FAIL)."""

    def __init__(self, space: SearchSpace, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._optuna = optuna
        self._space = space
        sampler = optuna.samplers.TPESampler(seed=seed)
        self._study = optuna.create_study(direction="minimize", sampler=sampler)
        self._trial: Any = None

    def ask(self) -> dict[str, Scalar]:
        self._trial = trial = self._study.ask()
        values: dict[str, Scalar] = {}
        for d in self._space.dimensions:
            p = d.param
            if p.kind == "choice":
                values[d.name] = trial.suggest_categorical(d.name, list(p.values or []))
            elif d.hp.kind == "int":
                values[d.name] = trial.suggest_int(d.name, int(p.low), int(p.high), log=p.log)
            else:
                values[d.name] = trial.suggest_float(d.name, p.low, p.high, log=p.log)
        return {**values, **self._space.fixed}

    def tell(self, loss: float | None, message: str) -> None:
        if loss is None:
            self._study.tell(self._trial, state=self._optuna.trial.TrialState.FAIL)
        else:
            self._study.tell(self._trial, loss)


class KerasTunerSampler:
    """KerasTuner's BayesianOptimizationOracle with its defaults; objective our loss, minimised."""

    def __init__(self, space: SearchSpace, seed: int, max_trials: int, folder: Path) -> None:
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for d in space.dimensions:
            p = d.param
            sampling = "log" if p.log else "linear"
            if p.kind == "choice":
                hp.Choice(d.name, list(p.values or []))
            elif d.hp.kind == "int":
                hp.Int(d.name, int(p.low), int(p.high), sampling=sampling)
            else:
                hp.Float(d.name, p.low, p.high, sampling=sampling)
        self._oracle = kt.oracles.BayesianOptimizationOracle(
            objective=kt.Objective("loss", direction="min"),
            max_trials=max_trials,
            seed=seed,
            hyperparameters=hp,
            max_consecutive_failed_trials=max_trials + 1,  # our loop, not the oracle, ends runs
        )
        self._oracle.verbose = 0
        # A Tuner would set the oracle's folder; used alone, the oracle needs it to save trials.
        self._oracle._set_project_dir(str(folder), "oracle")
        self._space = space
        self._trial: Any = None

    def ask(self) -> dict[str, Scalar] | None:
        self._trial = self._oracle.create_trial("benchmark")
        if self._trial.status != "RUNNING":
            return None  # STOPPED: max_trials reached or the space exhausted
        values = self._trial.hyperparameters.values
        return {
            **{d.name: _plain(values[d.name]) for d in self._space.dimensions},
            **self._space.fixed,
        }

    def tell(self, loss: float | None, message: str) -> None:
        if loss is None:
            self._trial.status, self._trial.message = "FAILED", message
        else:
            self._oracle.update_trial(self._trial.trial_id, {"loss": loss})
            self._trial.status = "COMPLETED"
        self._oracle.end_trial(self._trial)


def _plain(value: Any) -> Scalar:
    """A NumPy scalar as the Python value (bool, int, float or str)."""
    return value.item() if isinstance(value, np.generic) else value


class CourseSampler:
    """The course's setup: bayes_opt with its defaults (UCB, kappa 2.576), 10 random points,
    then suggest/register. The learning rate is linear from 0 to the config's high (the course:
    0 to 0.1) or, as `log10_learning_rate`, log10 between the config's bounds. A failed trial is
    registered as the worst value seen (the course's own loop would have stopped there)."""

    def __init__(self, config: Config, seed: int, log_lr: bool) -> None:
        from bayes_opt import BayesianOptimization

        bounds, self._fixed = course_bounds(config, log_lr)
        self._optimizer = BayesianOptimization(
            f=None, pbounds=bounds, random_state=seed, verbose=0, allow_duplicate_points=True
        )
        self._queue = deque(self._optimizer.random_sample(COURSE_INIT_POINTS))
        self._point: dict[str, float] = {}
        self._targets: list[float] = []

    def ask(self) -> dict[str, Scalar]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn's GP convergence notes
            point = self._queue.popleft() if self._queue else self._optimizer.suggest()
        self._point = {name: float(value) for name, value in point.items()}
        values: dict[str, Scalar] = dict(self._point)
        if "log10_learning_rate" in values:
            values["learning_rate"] = 10 ** float(values.pop("log10_learning_rate"))
        return {**values, **self._fixed}

    def tell(self, loss: float | None, message: str) -> None:
        if loss is None and not self._targets:
            return  # nothing to compare a failure with yet; a NaN would poison the GP
        target = -loss if loss is not None else min(self._targets)
        self._targets.append(target)
        self._optimizer.register(params=self._point, target=target)


def course_bounds(
    config: Config, log_lr: bool
) -> tuple[dict[str, tuple[float, float]], dict[str, Scalar]]:
    """bayes_opt's pbounds of the course's four hyperparameters, and every other one's value.

    The course searched only its four; anything else takes the config's fixed value or the
    default (batch 32, no batch norm), as in the course."""
    space = SearchSpace(config.space)
    fixed = {n: v for n, v in space.fixed.items() if n not in COURSE_POINT}
    bounds: dict[str, tuple[float, float]] = {}
    for name in COURSE_POINT:
        param = config.space[name]
        if param.kind == "fixed":
            fixed[name] = space.fixed[name]
            continue
        if param.kind != "range":
            raise ValueError(f"course setup: space.{name} must be a range or a fixed value")
        low, high = float(param.low or 0.0), float(param.high or 0.0)
        if name == "learning_rate" and log_lr:
            if low <= 0:
                raise ValueError("course-log: space.learning_rate needs low > 0 for a log10 scale")
            bounds["log10_learning_rate"] = (math.log10(low), math.log10(high))
        elif name == "learning_rate":
            bounds[name] = (0.0, high)
        else:
            bounds[name] = (low, high)
    return bounds, fixed


def course_objective(
    config: Config, dataset: Dataset
) -> Callable[[Mapping[str, Scalar], int], Score]:
    """Worker factory: the course's evaluation (a Keras `fit` per split, as the course wrote it)."""
    from benchmarks.evaluate_speed import reference

    def objective(params: Mapping[str, Scalar], seed: int) -> Score:
        loss, epochs, seconds = reference(config, dataset, dict(params), seed)
        if not math.isfinite(loss):
            raise TrialFailed("diverged", f"held-out loss is {loss}")
        return Score(loss, 0.0, (), tuple(epochs), seconds)  # reference gives the mean only

    return objective

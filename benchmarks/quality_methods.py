"""The searches that benchmarks/search_quality.py compares, and the re-scoring of their winners.

`tuner` runs as its own CLI (`tuner search --json`), exactly as a user runs it. Every other
method proposes full parameter sets through an ask/tell sampler and scores them in a
`tuner.engine.worker.Worker` process, the way tuner's own search does: trial k of search seed S
gets the seed `trial_seed(S, k)` for its splits and weights. Random search, Optuna and
KerasTuner score with tuner's own evaluator (`tuner.training.evaluate:make_objective`); the
course's setup scores with the course's Keras `fit` (benchmarks/evaluate_speed.py's
`reference`). A hidden objective (tests) replaces all. Every winner is re-scored by one
`Rescorer`: the same fresh splits for every method.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tuner.config.schema import Config, Scalar, validate_config
from tuner.config.space import SearchSpace
from tuner.engine.worker import DEFAULT_FACTORY, Worker
from tuner.errors import TrialFailed
from tuner.optimize.asking import trial_seed
from tuner.study.results import load_results
from tuner.study.store import TrialState
from tuner.training.data import Dataset
from tuner.training.evaluate import Score

ROOT = Path(__file__).resolve().parents[1]
COURSE_FACTORY = "benchmarks.quality_methods:course_objective"
# The course's setup searches with no parameter limit, so its winners are re-scored without one.
UNLIMITED = ("course-linear", "course-log")
NO_LIMIT = 10**12
# Splits and weights of the re-scoring: a seed from its own entropy, so no search seed
# (trial_seed(S, k) = SeedSequence([S, k])) is it; the same for every method (paired).
RESCORE_SEED = int(np.random.SeedSequence([0x5EED, 558, 20]).generate_state(1)[0] >> 1)
OPTIONAL = {"optuna": "optuna", "kerastuner": "keras_tuner"}


@dataclass(frozen=True)
class Budget:
    """Trials or seconds; a search stops proposing once either is spent."""

    trials: int | None = None
    seconds: float | None = None

    def spent(self, trials: int, elapsed: float) -> bool:
        """True when no new trial may start."""
        if self.trials is not None and trials >= self.trials:
            return True
        return self.seconds is not None and elapsed >= self.seconds

    def trial_timeout(self, config: Config) -> float | None:
        """`evaluation.timeout` for this budget: with a time budget, no trial may run longer
        than the whole budget (a trial that starts before the deadline finishes, up to that)."""
        timeout = config.evaluation.timeout
        if self.seconds is None:
            return timeout
        return self.seconds if timeout is None else min(timeout, self.seconds)


@dataclass(frozen=True)
class Setting:
    """What every method of a run shares: the config, its data and the evaluators."""

    config_path: Path
    overrides: tuple[str, ...]
    config: Config
    dataset: Dataset
    objective: str | None = None  # the hidden cheap objective (tests), for every evaluator
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr)  # progress

    @property
    def factory(self) -> str:
        """tuner's bootstrap score, as `tuner search` runs it."""
        return self.objective or DEFAULT_FACTORY

    @property
    def course_factory(self) -> str:
        """The course's own evaluation (Keras fit)."""
        return self.objective or COURSE_FACTORY


@dataclass
class Outcome:
    """A finished search: the method's own best (search-time) loss and point, and its cost."""

    reported: float | None = None
    params: dict[str, Scalar] | None = None
    trials: int = 0
    failed: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    no_winner: str | None = None  # why the search reported no best (a result, not a crash)


class Sampler(Protocol):
    """Proposes full parameter sets and learns each one's loss (None: the trial failed)."""

    def ask(self) -> dict[str, Scalar] | None: ...

    def tell(self, loss: float | None, message: str) -> None: ...


# The samplers: each proposes full parameter sets (searched and fixed) and is told each one's
# loss, or None when the trial failed. None of them knows how a point is scored.
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


def run_sampler(
    setting: Setting, seed: int, budget: Budget, sampler: Sampler, factory: str
) -> Outcome:
    """The ask/score/tell loop of every method but tuner, on one worker process."""
    outcome = Outcome()
    started = time.perf_counter()
    config = with_evaluation(setting.config, timeout=budget.trial_timeout(setting.config))
    worker = Worker(config, setting.dataset, factory)
    try:
        while not budget.spent(outcome.trials, time.perf_counter() - started):
            params = sampler.ask()
            if params is None:
                break  # the sampler has nothing left to propose
            loss, message = _score(worker, params, trial_seed(seed, outcome.trials))
            sampler.tell(loss, message)
            outcome.trials += 1
            outcome.failed += loss is None
            if loss is not None and (outcome.reported is None or loss < outcome.reported):
                outcome.reported, outcome.params = loss, dict(params)
            best = f"{outcome.reported:.4f}" if outcome.reported is not None else "-"
            setting.log(f"trial {outcome.trials}: {message} (best {best})")
    finally:
        worker.close()
    outcome.seconds = time.perf_counter() - started
    if outcome.params is None:
        outcome.no_winner = f"no completed trial in {outcome.trials}"
    return outcome


def with_evaluation(config: Config, **changes: Any) -> Config:
    """The config with some `evaluation` keys changed."""
    raw = config.to_dict()
    raw["evaluation"] = {**raw.get("evaluation", {}), **changes}
    return validate_config(raw)


def _score(worker: Worker, params: Mapping[str, Scalar], seed: int) -> tuple[float | None, str]:
    try:
        score = worker(params, seed)
    except TrialFailed as exc:
        return None, f"failed ({exc.kind}: {exc.message[:100]})"
    return score.loss, f"loss {score.loss:.4f} in {score.seconds:.1f} s"


def duration_text(seconds: float) -> str:
    """`--time-budget` text: whole minutes as `10m`, else seconds as `90s`."""
    whole = round(seconds)
    return f"{whole // 60}m" if whole % 60 == 0 and whole >= 60 else f"{whole}s"


def tuner_command(setting: Setting, seed: int, budget: Budget, folder: Path) -> list[str]:
    """`tuner search` as a user runs it, with this seed and budget (user's --set first)."""
    command = [sys.executable, "-m", "tuner.cli.commands", "search", str(setting.config_path)]
    command += ["--json", "--out", str(folder)]
    for item in (*setting.overrides, f"search.seed={seed}"):
        command += ["--set", item]
    if budget.trials is not None:
        init = min(setting.config.search.init_points, budget.trials)
        command += ["--set", f"search.init_points={init}"]
        command += ["--set", f"search.n_iter={budget.trials - init}"]
    if budget.seconds is not None:
        command += ["--time-budget", duration_text(budget.seconds)]
        command += ["--set", f"evaluation.timeout={budget.trial_timeout(setting.config)}"]
        if budget.trials is None:
            command += ["--set", "search.n_iter=1000000"]  # the time is the budget
    if setting.objective:
        command += ["--objective", setting.objective]
    return command


def tuner_env() -> dict[str, str]:
    """This checkout's `tuner` first on the path (also for a test objective's module)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def run_tuner(setting: Setting, seed: int, budget: Budget, folder: Path) -> Outcome:
    """`tuner search --json` in its own process; its winner is what it prints."""
    started = time.perf_counter()
    command = tuner_command(setting, seed, budget, folder)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=tuner_env(), check=False)
    seconds = time.perf_counter() - started
    if done.returncode == 1:  # no completed trial, or a streak of failures: its message is above
        return Outcome(seconds=seconds, no_winner="tuner search exited with 1")
    if done.returncode != 0:
        raise RuntimeError(f"tuner search exited with {done.returncode}; its message is above")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    trials = load_results(result["storage"], result["study"]).trials
    extra = {k: result[k] for k in ("trial", "loss_std", "search_loss") if k in result}
    return Outcome(
        reported=float(result["loss"]),
        params=dict(result["params"]),
        trials=sum(t.counts for t in trials),
        failed=sum(t.counts and t.state == TrialState.FAILED for t in trials),
        seconds=seconds,
        extra=extra,
    )


class Rescorer:
    """Scores points on the same `splits` fresh splits (seed RESCORE_SEED) in one worker.

    A method whose search has no parameter limit (the course's setup) may report a network over
    `evaluation.max_params`; `limited=False` re-scores it without the limit, in a second worker.
    """

    def __init__(self, setting: Setting, splits: int) -> None:
        evaluation = setting.config.evaluation
        # A timeout is meant for the search's splits: scaled to these.
        timeout = evaluation.timeout and evaluation.timeout * splits / evaluation.splits
        self._config = with_evaluation(setting.config, splits=splits, timeout=timeout)
        self._setting = setting
        self._worker = Worker(self._config, setting.dataset, setting.factory)
        self._unlimited: Worker | None = None

    def _worker_for(self, limited: bool) -> Worker:
        if limited:
            return self._worker
        if self._unlimited is None:
            config = with_evaluation(self._config, max_params=NO_LIMIT)
            self._unlimited = Worker(config, self._setting.dataset, self._setting.factory)
        return self._unlimited

    def exported(self, params: Mapping[str, Scalar]) -> dict[str, Any]:
        """tuner's reported procedure re-scored on the same splits: the ensemble of
        `evaluation.splits` networks that tuner exports, trained on each training part alone."""
        members = self._setting.config.evaluation.splits
        found = self(params, True, members=members)
        return {f"exported_{key}": value for key, value in found.items()}

    def __call__(
        self, params: Mapping[str, Scalar], limited: bool = True, **options: Any
    ) -> dict[str, Any]:
        """`rescored` (None when it failed), its spread and split losses, and seconds."""
        started = time.perf_counter()
        try:
            score = self._worker_for(limited)(params, RESCORE_SEED, **options)
        except TrialFailed as exc:
            took = time.perf_counter() - started
            return {
                "rescored": None,
                "rescore_error": f"{exc.kind}: {exc.message}",
                "rescore_s": took,
            }
        return {
            "rescored": score.loss,
            "rescored_std": score.loss_std,
            "rescore_split_losses": list(score.split_losses),
            "rescore_s": time.perf_counter() - started,
        }

    def close(self) -> None:
        """Stop the worker processes."""
        self._worker.close()
        if self._unlimited is not None:
            self._unlimited.close()


Method = Callable[[Setting, int, Budget, Path], Outcome]


def _space(setting: Setting) -> SearchSpace:
    return SearchSpace(setting.config.space)


def run_random(setting: Setting, seed: int, budget: Budget, folder: Path) -> Outcome:
    """Random search in tuner's scaled space."""
    return run_sampler(setting, seed, budget, RandomSampler(_space(setting), seed), setting.factory)


def run_optuna(setting: Setting, seed: int, budget: Budget, folder: Path) -> Outcome:
    """Optuna's TPE sampler."""
    return run_sampler(setting, seed, budget, OptunaSampler(_space(setting), seed), setting.factory)


def run_kerastuner(setting: Setting, seed: int, budget: Budget, folder: Path) -> Outcome:
    """KerasTuner's BayesianOptimization oracle."""
    with contextlib.redirect_stdout(sys.stderr):  # its oracle prints
        sampler = KerasTunerSampler(_space(setting), seed, budget.trials or 10**6, folder)
        return run_sampler(setting, seed, budget, sampler, setting.factory)


def run_course_linear(setting: Setting, seed: int, budget: Budget, folder: Path) -> Outcome:
    """The course's setup, learning rate linear as the course had it."""
    sampler = CourseSampler(setting.config, seed, log_lr=False)
    return run_sampler(setting, seed, budget, sampler, setting.course_factory)


def run_course_log(setting: Setting, seed: int, budget: Budget, folder: Path) -> Outcome:
    """The course's setup, learning rate searched as log10."""
    sampler = CourseSampler(setting.config, seed, log_lr=True)
    return run_sampler(setting, seed, budget, sampler, setting.course_factory)


METHODS: dict[str, tuple[str, Method]] = {
    "tuner": ("tuner (as shipped)", run_tuner),
    "random": ("random search (tuner's scaled space)", run_random),
    "optuna": ("Optuna TPE", run_optuna),
    "kerastuner": ("KerasTuner BayesianOptimization", run_kerastuner),
    "course-linear": (
        "course setup (bayes_opt + Keras fit), linear learning rate",
        run_course_linear,
    ),
    "course-log": ("course setup (bayes_opt + Keras fit), log10 learning rate", run_course_log),
}


def run_method(method: str, setting: Setting, seed: int, budget: Budget) -> Outcome:
    """One search of `method` with this seed and budget, in a scratch folder."""
    with tempfile.TemporaryDirectory(prefix=f"quality-{method}-") as folder:
        return METHODS[method][1](setting, seed, budget, Path(folder))

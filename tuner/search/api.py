"""The library functions behind `tuner search` and `tuner worker`, usable without the CLI.

They load the data, open the study, start the trial workers on this box (one, or a pool of
them), run the search loop (search.py, or pool.py for many workers) and, for `tuner search`,
re-score the finalists at the end.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from tuner.config.schema import Config, Scalar, validate_config
from tuner.errors import StudyError
from tuner.optimize.asking import Asker
from tuner.search.budget import Deadline, end_seconds, final_reserve, fit_final
from tuner.search.final import Baseline, rescore
from tuner.search.loop import (
    Reporter,
    SearchResult,
    open_study,
    run_search,
    study_result,
)
from tuner.search.signals import Signals
from tuner.search.worker import DEFAULT_FACTORY, Worker
from tuner.study.store import Storage, StudyRecord, TrialRecord, require_database
from tuner.study.warmstart import warm_trials
from tuner.training.difficulty import baseline_fits
from tuner.training.evaluate import Score, size_limit


@dataclass(frozen=True)
class Parallel:
    """How many trials run at once on this box: `--workers`, `--gpus`, `--trials-per-gpu`."""

    workers: int | None = None
    gpus: str | None = None
    trials_per_gpu: int = 1

    @property
    def single(self) -> bool:
        """One CPU worker: the plain search loop."""
        return self.workers in (None, 1) and self.gpus is None


def search(
    config: Config,
    *,
    storage_url: str,
    study_name: str,
    resume: bool,
    reporter: Reporter,
    factory: str = DEFAULT_FACTORY,
    parallel: Parallel = Parallel(),
) -> SearchResult:
    """Load the data, open (or resume) the study and run the search: `tuner search`.

    Trials run in worker processes that build their objective with `factory`
    (`module:function`, called with the config and the data set). Once every trial of the
    study has ended, this process (never `tuner worker`) re-scores the finalists.
    """
    started = time.monotonic()  # the clock starts with the search, data loading included
    from tuner.training.data import load_dataset, make_splits

    dataset = load_dataset(config.data)
    make_splits(dataset, config.evaluation.splits, config.evaluation.test_size, 0)  # fail early
    # A missing warm-start study or another space is refused before any write.
    prior = warm_trials(config)
    fit_seconds = _fit_seconds(config, dataset)
    baseline_seconds = _baseline_seconds(config, fit_seconds)
    deadline = search_deadline(config, started, baseline_seconds)
    storage, signals = Storage(storage_url), Signals()
    # The search's signals also cover closing the workers and the storage after it.
    with signals:
        try:
            with storage.exclusive():
                study = open_study(storage, study_name, config, resume)
                run = _Run(dataset, factory, parallel, deadline, signals, prior, True, fit_seconds)
                return _run(config, storage, study, run, reporter)
        finally:
            storage.close()


def search_deadline(config: Config, started: float, baseline_seconds: float) -> Deadline:
    """The time budget of `tuner search` from `started`: no trial starts, and no racing round,
    that would run into the time kept for the final re-score and the baseline's fits."""
    reserve = partial(final_reserve, config, baseline_seconds=baseline_seconds)
    end = partial(end_seconds, config, baseline_seconds=baseline_seconds)
    return Deadline(config.search.time_budget, started, reserve, end)


def worker_deadline(config: Config) -> Deadline:
    """The time budget of `tuner worker`, from now: it keeps nothing for a final re-score (it
    runs none), and starts no racing round expected to run past the budget."""
    return Deadline(config.search.time_budget, end=lambda _: 0.0)


def joined_config(storage_url: str, study_name: str, overrides: Sequence[str]) -> Config:
    """The config stored in a study, with `--set` overrides (e.g. this box's data.path)."""
    from tuner.config.yamlfile import apply_overrides

    require_database(storage_url)
    storage = Storage(storage_url)
    try:
        study = storage.get_study(study_name)
    finally:
        storage.close()
    if study is None:
        raise StudyError(
            f"--study: no study '{study_name}' in {storage_url}; create it with tuner search"
        )
    return validate_config(apply_overrides(dict(study.config), overrides))


def join_study(
    config: Config,
    storage_url: str,
    study_name: str,
    reporter: Reporter,
    factory: str = DEFAULT_FACTORY,
    parallel: Parallel = Parallel(),
) -> SearchResult:
    """`tuner worker`: run trials of a study another box created until its budget is spent."""
    deadline = worker_deadline(config)
    from tuner.training.data import load_dataset

    dataset = load_dataset(config.data)
    storage, signals = Storage(storage_url), Signals()
    with signals:
        try:
            study = storage.get_study(study_name)
            if study is None:
                raise StudyError(f"--study: study '{study_name}' is gone from {storage_url}")
            run = _Run(dataset, factory, parallel, deadline, signals)
            return _run(config, storage, study, run, reporter)
        finally:
            storage.close()


@dataclass(frozen=True)
class _Run:
    """How `_run` runs a study's trials on this box."""

    dataset: Any
    factory: str
    parallel: Parallel
    deadline: Deadline
    signals: Signals  # Ctrl-C and SIGTERM, from the trials to the cleanup after them
    prior: Sequence[TrialRecord] | None = None  # the warm-start trials, once read
    final: bool = False  # then re-score the finalists in the first worker
    fit_seconds: float = 0.0  # of one split-difficulty baseline fit (timed with a budget)


def _fit_seconds(config: Config, dataset: Any) -> float:
    """Seconds of one split-difficulty baseline fit, timed now for a search with a time
    budget (its end keeps time for them); 0 without a budget or without the baseline."""
    from tuner.training.difficulty import fit_seconds

    if config.search.time_budget is None or baseline_fits(config) == 0:
        return 0.0
    return fit_seconds(dataset, config.evaluation.test_size)


def _baseline_seconds(config: Config, fit_seconds: float) -> float:
    """Expected seconds of the split-difficulty baseline's fits at the end of a search: kept
    by the reserve while trials run, and out of the final re-score's cut."""
    return baseline_fits(config) * fit_seconds


@dataclass(frozen=True)
class _Baseline:
    """The split-difficulty baseline on this search's data, within its time budget."""

    dataset: Any
    test_size: float
    deadline: Deadline
    fit_seconds: float

    def __call__(self, seed: int, splits: int) -> tuple[float, ...]:
        """Its loss on each of the `splits` splits from `seed` (difficulty.baseline_losses)."""
        from tuner.training import difficulty

        return difficulty.baseline_losses(self.dataset, seed, splits, self.test_size)

    def room(self) -> int | None:
        """The fits that fit in the time budget's rest (None without a budget)."""
        left = self.deadline.left()
        if left is None or self.fit_seconds <= 0:
            return None
        return int(left // self.fit_seconds)


def _run(
    config: Config, storage: Storage, study: StudyRecord, run: _Run, reporter: Reporter
) -> SearchResult:
    """Run the trials in worker processes; with `run.final`, then re-score in the first one."""
    from tuner.search.slots import parse_gpus, plan_slots, run_pool

    parallel, slots = run.parallel, []
    if not parallel.single:
        slots = plan_slots(parallel.workers, parse_gpus(parallel.gpus), parallel.trials_per_gpu)
    workers = [Worker(config, run.dataset, run.factory, slot.env) for slot in slots]
    workers = workers or [Worker(config, run.dataset, run.factory)]
    prior = warm_trials(config) if run.prior is None else run.prior
    asker = Asker(config, prior, size_limit(config, run.dataset))
    try:
        if parallel.single:
            result = run_search(
                config, storage, study, workers[0], reporter, run.deadline, asker, run.signals
            )
        else:
            pairs = list(zip(slots, workers, strict=True))
            result = run_pool(
                config, storage, study, pairs, reporter, run.deadline, asker, run.signals
            )
        if not run.final or config.search.final_candidates <= 0:
            return result
        test_size = config.evaluation.test_size
        baseline = _Baseline(run.dataset, test_size, run.deadline, run.fit_seconds)
        seconds = _baseline_seconds(config, run.fit_seconds)
        final = _Final(workers[0], run.deadline, run.signals, result.time_up, baseline, seconds)
        return _final(config, storage, study, final, reporter)
    finally:
        for worker in workers:
            worker.close(kill=True)


@dataclass(frozen=True)
class _Final:
    """What the final re-score runs in and within."""

    worker: Worker  # a trial worker's (warm) process
    deadline: Deadline
    signals: Signals
    time_up: bool  # the time budget ended the search
    baseline: Baseline  # the split-difficulty baseline
    baseline_seconds: float = 0.0  # its fits' expected seconds (with a time budget)


def _final(
    config: Config, storage: Storage, study: StudyRecord, final: _Final, reporter: Reporter
) -> SearchResult:
    """The final re-score, cut to the time budget's rest."""
    own, worker = config.evaluation.splits, final.worker

    def objective(params: Mapping[str, Scalar], seed: int, splits: int) -> Score:
        return worker(params, seed, None if splits == own else splits)  # type: ignore[no-any-return]

    left = final.deadline.left()
    fitted = fit_final(config, storage.trials(study), left, final.baseline_seconds)
    if fitted is not config:
        assert left is not None
        reporter.final_fitted(config.search, fitted.search, left)
    if fitted.search.final_candidates > 0:
        rescore(fitted, storage, study, objective, reporter, final.baseline, final.signals)
    result = study_result(storage, study, final.time_up)
    reporter.final_finished(result.winner)
    return result

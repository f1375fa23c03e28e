"""The library functions behind `tuner search`, `tuner worker` and `tuner evaluate`."""

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tuner.config.schema import Config, Scalar, validate_stored
from tuner.config.yamlfile import apply_overrides
from tuner.engine.budget import Deadline, end_room, final_reserve, fit_final
from tuner.engine.final import rescore
from tuner.engine.loop import SearchResult, open_study, run_trials, study_result
from tuner.engine.reporter import Reporter
from tuner.engine.signals import Signals
from tuner.engine.slots import parse_gpus, plan_slots
from tuner.engine.worker import DEFAULT_FACTORY, Worker
from tuner.errors import StudyError
from tuner.optimize.asking import Asker
from tuner.study.store import Storage, StudyRecord, TrialRecord, require_database
from tuner.study.warmstart import warm_trials
from tuner.study.winner import winner
from tuner.training.architecture import Architecture
from tuner.training.baselines import score_baselines
from tuner.training.evaluate import Score, architecture_for, load_for_scoring, size_limit


@dataclass(frozen=True)
class Parallel:
    """How many trials run at once on this box: `--workers`, `--gpus`, `--trials-per-gpu`."""

    workers: int | None = None
    gpus: str | None = None
    trials_per_gpu: int = 1


def search(
    config: Config,
    *,
    storage_url: str,
    study_name: str,
    resume: bool = False,
    reporter: Reporter | None = None,
    factory: str = DEFAULT_FACTORY,
    parallel: Parallel = Parallel(),
) -> SearchResult:
    """`tuner search`: the study's trials in worker processes, then the end of the search."""
    started = time.monotonic()  # the clock starts with the search, data loading included
    dataset = load_for_scoring(config)
    prior = warm_trials(config)  # a missing warm-start study or another space: before any write
    reserve = lambda trials: final_reserve(config, trials)  # noqa: E731
    deadline = Deadline(config.search.time_budget, started, reserve)
    storage, signals, reporter = Storage(storage_url), Signals(), reporter or Reporter()
    run = _Run(dataset, factory, parallel, deadline, signals, reporter, prior, final=True)
    with signals:  # the search's signals also cover closing the workers and the storage
        try:
            with storage.exclusive():
                study = open_study(storage, study_name, config, resume)
                result = _run(config, storage, study, run)
        finally:
            storage.close()
    return replace(result, seconds=time.monotonic() - started)


def joined_config(storage_url: str, study_name: str, overrides: Sequence[str]) -> Config:
    """The config stored in a study, with `--set` overrides (e.g. this box's data.path)."""
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
    return validate_stored(apply_overrides(dict(study.config), overrides))


def join_study(
    config: Config,
    storage_url: str,
    study_name: str,
    reporter: Reporter | None = None,
    factory: str = DEFAULT_FACTORY,
    parallel: Parallel = Parallel(),
) -> SearchResult:
    """`tuner worker`: run trials of a study another box created until its budget is spent."""
    deadline = Deadline(config.search.time_budget)  # it runs no end, so keeps no time for one
    dataset = load_for_scoring(config)
    storage, signals = Storage(storage_url), Signals()
    with signals:
        try:
            study = storage.get_study(study_name)
            if study is None:
                raise StudyError(f"--study: study '{study_name}' is gone from {storage_url}")
            run = _Run(dataset, factory, parallel, deadline, signals, reporter or Reporter())
            return _run(config, storage, study, run)
        finally:
            storage.close()


def evaluate_config(
    config: Config, params: Mapping[str, Scalar], seed: int, dataset: Any = None
) -> tuple[Score, Architecture]:
    """`tuner evaluate`: score one point in a worker process (the data loaded unless given)."""
    dataset = load_for_scoring(config) if dataset is None else dataset
    worker = Worker(config, dataset)
    try:
        score = worker(params, seed)
    finally:
        worker.close()
    return score, architecture_for(config, dataset, params)


@dataclass(frozen=True)
class _Run:
    """How `_run` runs a study's trials on this box."""

    dataset: Any
    factory: str
    parallel: Parallel
    deadline: Deadline
    signals: Signals  # Ctrl-C and SIGTERM, from the trials to the cleanup after them
    reporter: Reporter
    prior: Sequence[TrialRecord] | None = None  # the warm-start trials, once read
    final: bool = False  # then run the end of the search in the first worker


def _run(config: Config, storage: Storage, study: StudyRecord, run: _Run) -> SearchResult:
    """Run the trials in worker processes; with `run.final`, then the end in the first one."""
    p = run.parallel
    single = p.workers in (None, 1) and p.gpus is None
    slots = [] if single else plan_slots(p.workers, parse_gpus(p.gpus), p.trials_per_gpu)
    labelled = [(slot.label, slot.env) for slot in slots] or [(None, None)]
    pairs = [(label, Worker(config, run.dataset, run.factory, env)) for label, env in labelled]
    prior = warm_trials(config) if run.prior is None else run.prior
    asker = Asker(config, prior, size_limit(config, run.dataset))
    try:
        reporter, deadline = run.reporter, run.deadline
        result = run_trials(config, storage, study, pairs, reporter, deadline, asker, run.signals)
        if not run.final or config.search.final_candidates <= 0:
            return result
        return _end(config, storage, study, pairs[0][1], run, result.time_up)
    finally:
        for _, worker in pairs:
            worker.close(kill=True)


def _baselines(config: Config, storage: Storage, study: StudyRecord, dataset: Any) -> None:
    """Score the simple models on the winner's confirmation splits, kept beside it: whether
    the network is worth it, at a glance (seconds of scikit-learn)."""
    found = winner(storage.trials(study))
    if found is None or not found.confirmed or found.trial.confirm is None:
        return
    confirm = found.trial.confirm
    sizes = confirm.sizes or (confirm.splits,)
    scored = score_baselines(config, dataset, confirm.seeds, sizes)
    storage.set_attrs(found.trial, {"baselines": scored})


def _end(
    config: Config, storage: Storage, study: StudyRecord, worker: Worker, run: _Run, time_up: bool
) -> SearchResult:
    """The end of the search in `worker`'s warm process, sized to its share of the run."""
    started, own = time.monotonic(), config.evaluation.splits

    def objective(params: Mapping[str, Scalar], seed: int, splits: int, **options: Any) -> Score:
        # options: members=K for the winner's confirmation, an ensemble of K networks a split
        chosen = None if splits == own else splits
        return worker(params, seed, chosen, **options)  # type: ignore[no-any-return]

    fitted = fit_final(config, storage.trials(study), end_room(config, run.deadline))
    if fitted.search.final_candidates > 0:
        rescore(fitted, storage, study, objective, run.reporter, run.signals)
        _baselines(config, storage, study, run.dataset)
    result = study_result(storage, study, time_up)
    run.reporter.final_finished(result.winner)
    return replace(result, end_seconds=time.monotonic() - started)

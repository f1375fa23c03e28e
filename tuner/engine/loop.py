"""The search loop: each slot (one here, several in threads) asks, scores, records a trial."""

import contextlib
import functools
import inspect
import itertools
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tuner.config.schema import Config, Scalar, space_differences, validate_stored
from tuner.engine.budget import Deadline, describe_end, pending
from tuner.engine.reporter import Reporter
from tuner.engine.signals import Signals
from tuner.errors import (
    SearchFailed,
    SearchInterrupted,
    StudyError,
    TrialFailed,
    TrialRejected,
    UsageError,
)
from tuner.optimize.asking import Asker
from tuner.study.heartbeat import Heartbeat
from tuner.study.store import RERUN_KINDS, Storage, StudyRecord, TrialRecord, TrialState
from tuner.study.warmstart import warm_trials
from tuner.study.winner import Winner, ranked, winner
from tuner.training.evaluate import Score

Objective = Callable[[Mapping[str, Scalar], int], Score]


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a search: its winner and every trial of the study."""

    study: str
    storage: str
    winner: Winner
    trials: tuple[TrialRecord, ...]
    time_up: bool = False  # the time budget ended it before the trial budget
    end_seconds: float | None = None  # of the work after the last trial
    seconds: float | None = None  # of the whole run

    @property
    def best(self) -> TrialRecord:
        return self.winner.trial

    def to_dict(self) -> dict[str, Any]:
        """The JSON object that `tuner search --json` prints: `loss` is the reported one."""
        return {
            "trial": self.best.number,
            **self.winner.to_dict(),
            "params": self.best.params,
            "study": self.study,
            "storage": self.storage,
            "run_seconds": self.seconds,
            "end_seconds": self.end_seconds,
        }


def open_study(storage: Storage, name: str, config: Config, resume: bool) -> StudyRecord:
    """Create the study, or with `resume` continue it (failing trials a dead process left)."""
    existing = storage.get_study(name)
    if existing is None:
        return storage.create_study(name, config.to_dict())
    if not resume:
        raise StudyError(
            f"--study: study '{name}' already exists in {storage.url}; add --resume to continue "
            "it, or choose another --study (or --out folder)"
        )
    old_space = validate_stored(existing.config).full_space() if "space" in existing.config else {}
    differing = space_differences(old_space, config.full_space())
    if differing:
        raise StudyError(
            f"--resume: the search space differs from study '{name}' in {', '.join(differing)}; "
            "resume with the study's space or start another --study"
        )
    if not storage.shared:  # a server study's running trials may be other boxes' live ones
        storage.fail_running(existing, "interrupted", "the process running it stopped")
    return existing


def run_trial(
    storage: Storage, trial: TrialRecord, objective: Objective, signals: Signals
) -> TrialRecord:
    """Score one trial and record how it ended (TrialRejected when it was taken from us)."""
    started = time.perf_counter()

    def failed(kind: str, message: str) -> TrialRecord:
        seconds = time.perf_counter() - started
        return storage.finish_trial(
            trial, state=TrialState.FAILED, error_kind=kind, error=message, seconds=seconds
        )

    try:
        score = objective(trial.params, trial.seed)
    except TrialFailed as exc:
        return failed(exc.kind, exc.message)
    except SearchInterrupted:
        raise
    except UsageError as exc:
        failed("error", str(exc))
        raise
    except Exception as exc:  # a bug or a framework error in one trial must not end the search
        if signals.received is not None:
            raise signals.stopped() from exc
        return failed("crashed", f"{type(exc).__name__}: {exc}")
    return storage.finish_trial(trial, state=TrialState.COMPLETE, **score.to_dict())


# Failures of a point, not of the setup; "died" counts: a setup that kills every worker must end
# the search.
_NO_STREAK = frozenset({"too_large", "interrupted", "stale"})


def check_failure_streak(trials: Sequence[TrialRecord], limit: int) -> None:
    """SearchFailed once the last `limit` ended trials all failed for a reason of the setup."""
    ended = itertools.takewhile(lambda t: t.state != TrialState.COMPLETE, reversed(trials))
    streak = [t for t in ended if t.state == TrialState.FAILED and t.error_kind not in _NO_STREAK]
    if len(streak) < limit:
        return
    last = "; ".join(
        f"#{t.number} {t.error_kind}: {(t.error or '')[:80]}" for t in reversed(streak[:3])
    )
    raise SearchFailed(
        f"{len(streak)} trials failed in a row (search.max_consecutive_failures), last: {last}; "
        "fix the cause, then continue with --resume"
    )


def fail_own(storage: Storage, study: StudyRecord, heartbeat: Heartbeat, message: str) -> None:
    """Mark this process's running trials interrupted (on SQLite: every running trial)."""
    if storage.shared:
        storage.fail_trials(heartbeat.trials(), "interrupted", message)
    else:
        storage.fail_running(study, "interrupted", message)


@dataclass
class _Loop:
    """What the slots share: the study, the stop flag, the reporter and the first error."""

    config: Config
    storage: Storage
    study: StudyRecord
    reporter: Reporter
    deadline: Deadline
    asker: Asker
    heartbeat: Heartbeat
    signals: Signals
    stop: threading.Event = field(default_factory=threading.Event)
    time_up: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    errors: list[BaseException] = field(default_factory=list)
    running: dict[str, int | None] = field(default_factory=dict)
    slots: int = 1
    walls: list[float] = field(default_factory=list)  # wall seconds of this run's trials

    def progress(self, trial: TrialRecord, epoch: int, loss: float) -> None:
        """Tell the reporter a running trial's epoch (from any slot's thread)."""
        with self.lock:
            self.reporter.trial_progress(trial, epoch, loss)

    def finished(self, trial: TrialRecord, seconds: float, trials: Sequence[TrialRecord]) -> None:
        """Tell the reporter a trial ended, after the search's new estimate of the time left."""
        best = next(iter(ranked(trials)), None)
        with self.lock:
            if trial.counts:
                self.walls.append(seconds)
            self.reporter.eta_changed(estimate_left(self, trials))
            self.reporter.trial_finished(trial, best)

    def show(self, label: str | None, trial: TrialRecord | None) -> None:
        """Tell the reporter a trial starts, or (None) a slot went idle."""
        with self.lock:
            if trial is not None:
                self.reporter.trial_started(trial)
            if label is not None:
                self.running[label] = trial.number if trial is not None else None
                self.reporter.slots_changed(dict(self.running))

    def passed(self) -> bool:
        """True once the time budget less its reserve is spent, and from then on."""
        deadline = self.deadline
        if not self.time_up and deadline.seconds is not None:
            trials = self.storage.trials(self.study) if deadline.reserve is not None else ()
            self.time_up = deadline.passed(trials)
        return self.time_up


def estimate_left(loop: _Loop, trials: Sequence[TrialRecord]) -> float | None:
    """Seconds left: the trials still to run at a typical trial's wall time, `loop.slots` at a
    time, then the end within its share of the run; at most the time budget's rest. None until
    a trial has completed."""
    stored = [t.seconds for t in trials if t.state == TrialState.COMPLETE and t.seconds]
    if not (loop.walls or stored):
        return None
    # This run's wall times include the worker's start and the asking; a resumed search has
    # only the stored training seconds until its first trial ends.
    typical, config = float(np.median(loop.walls or stored)), loop.config
    left = max(0, config.search.budget - sum(t.counts for t in trials))
    seconds = left * typical / loop.slots
    if loop.deadline.reserve is not None:  # only a search that runs an end keeps room for it
        share = config.search.final_share
        room = share / (1.0 - share) * (loop.deadline.elapsed() + seconds)
        seconds += min(pending(config, trials).seconds, room)
    budget_left = loop.deadline.left()
    return seconds if budget_left is None else min(seconds, budget_left)


def _watched(objective: Objective, loop: _Loop, trial: TrialRecord) -> Objective:
    """The objective, telling the loop each epoch of `trial` when it takes `on_epoch` (a Worker
    does; a plain function need not)."""
    try:
        takes = "on_epoch" in inspect.signature(objective).parameters
    except (TypeError, ValueError):  # a callable without a signature Python can read
        takes = False
    hook = functools.partial(loop.progress, trial)
    return functools.partial(objective, on_epoch=hook) if takes else objective


def _next(loop: _Loop) -> TrialRecord | None:
    """The next trial for a slot, waiting while others run; None once the budget is spent."""
    search = loop.config.search
    while not loop.stop.is_set() and not loop.passed():
        asked = loop.storage.ask(loop.study, loop.asker.choose, search.grace)
        if asked.trial is not None:
            return asked.trial
        if sum(t.counts for t in asked.trials) >= search.budget:
            return None
        loop.stop.wait(min(search.heartbeat, 1.0))
    return None


def _slot(loop: _Loop, label: str | None, objective: Objective) -> None:
    """One slot: ask, run, tell, until the budget or the time is spent."""
    while (trial := _next(loop)) is not None:
        loop.show(label, trial)
        started, watched = time.monotonic(), _watched(objective, loop, trial)
        with loop.heartbeat.running(trial), contextlib.suppress(TrialRejected):
            finished = run_trial(loop.storage, trial, watched, loop.signals)
            loop.finished(finished, time.monotonic() - started, loop.storage.trials(loop.study))
        loop.show(label, None)
        trials = loop.storage.trials(loop.study)
        check_failure_streak(trials, loop.config.search.max_consecutive_failures)


def _in_thread(loop: _Loop, label: str | None, objective: Objective) -> None:
    try:
        _slot(loop, label, objective)
    except BaseException as exc:
        with loop.lock:
            loop.errors.append(exc)
        loop.stop.set()


def _run_slots(loop: _Loop, slots: Sequence[tuple[str | None, Objective]]) -> None:
    """One slot here; several in threads, joined in short waits so that Ctrl-C gets through."""
    if len(slots) == 1:
        _slot(loop, *slots[0])
        return
    threads = [
        threading.Thread(target=_in_thread, args=(loop, label, obj), name=label, daemon=True)
        for label, obj in slots
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
    finally:
        loop.stop.set()
    if loop.errors:
        raise loop.errors[0]


def run_trials(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    slots: Sequence[tuple[str | None, Objective]],
    reporter: Reporter | None = None,
    deadline: Deadline | None = None,
    asker: Asker | None = None,
    signals: Signals | None = None,
) -> SearchResult:
    """Run trials in `slots` (label, objective) until the budget or `deadline` is spent; however
    it ends, no trial of this process stays running."""
    reporter, signals = reporter or Reporter(), signals or Signals()
    heartbeat = Heartbeat(storage, config.search.heartbeat)
    deadline = deadline or Deadline(config.search.time_budget)
    asker = asker or Asker(config, warm_trials(config))
    loop = _Loop(config, storage, study, reporter, deadline, asker, heartbeat, signals)
    loop.slots = len(slots)  # the trials that run at once, for the estimate of the time left
    _announce(loop, storage.trials(study))

    def interrupted(_stop: SearchInterrupted) -> None:
        loop.stop.set()
        fail_own(storage, study, heartbeat, "interrupted by a signal")

    # Signals outermost: a second signal during the cleanup's writes leaves at once.
    with signals, signals.stopping(interrupted), heartbeat:
        try:
            _run_slots(loop, slots)
        except (SearchInterrupted, KeyboardInterrupt):
            raise
        except BaseException:
            with contextlib.suppress(Exception):
                fail_own(storage, study, heartbeat, "the search stopped with an error")
            raise
    trials = storage.trials(study)
    reporter.search_finished(trials)
    return study_result(storage, study, sum(t.counts for t in trials) < config.search.budget)


def _announce(loop: "_Loop", trials: Sequence[TrialRecord]) -> None:
    """Tell the reporter the search starts: trials done, those to run again, the end's plan."""
    config, retried = loop.config, {t.retry_of for t in trials}
    rerun = sum(1 for t in trials if t.error_kind in RERUN_KINDS and t.number not in retried)
    done = sum(t.counts for t in trials)
    name = loop.study.name
    loop.reporter.search_started(name, config.search.budget, done, rerun, describe_end(config))
    loop.reporter.eta_changed(estimate_left(loop, trials))


def study_result(storage: Storage, study: StudyRecord, time_up: bool = False) -> SearchResult:
    """The study's winner and trials as stored now (SearchFailed without a completed trial)."""
    trials = storage.trials(study)
    best = winner(trials)
    if best is None:
        raise SearchFailed(
            f"no trial of study '{study.name}' completed; see the errors with --debug or the "
            "study database, and check the config's bounds"
        )
    return SearchResult(study.name, storage.url, best, tuple(trials), time_up)


def run_search(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: Objective,
    reporter: Reporter | None = None,
    deadline: Deadline | None = None,
    asker: Asker | None = None,
    signals: Signals | None = None,
) -> SearchResult:
    """`run_trials` with one slot, in this thread: the sequential search."""
    slots = [(None, objective)]
    return run_trials(config, storage, study, slots, reporter, deadline, asker, signals)

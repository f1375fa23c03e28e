"""The search loop: ask the proposer, write the trial, score it, record how it ended.

`run_search()` is the loop, with the objective and the reporter passed in so that tests and
other front ends can drive it; main.py's `search()` is the library function behind `tuner search`.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tuner.config.schema import Config, Scalar, SearchConfig, space_differences, validate_config
from tuner.errors import (
    SearchFailed,
    SearchInterrupted,
    StudyError,
    TrialFailed,
    TrialRejected,
    UsageError,
)
from tuner.optimize.asking import Asker
from tuner.search.budget import Deadline
from tuner.search.final import FinalReporter
from tuner.search.racing import racing
from tuner.search.signals import Signals
from tuner.study.adjustment import comparable
from tuner.study.heartbeat import Heartbeat
from tuner.study.store import (
    RERUN_KINDS,
    Storage,
    StudyRecord,
    TrialRecord,
    TrialState,
)
from tuner.study.warmstart import warm_trials
from tuner.study.winner import Winner, ranked, winner
from tuner.training.evaluate import Score

Objective = Callable[[Mapping[str, Scalar], int], Score]


class Reporter(FinalReporter, Protocol):
    """What the search tells its user, the final re-score's lines included; report.py has the
    terminal one."""

    def search_started(self, study: str, budget: int, done: int, rerun: int) -> None: ...

    def trial_started(self, trial: TrialRecord) -> None: ...

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None: ...

    def search_finished(self, trials: Sequence[TrialRecord]) -> None: ...

    def slots_changed(self, running: Mapping[str, int | None]) -> None: ...

    def final_fitted(self, configured: SearchConfig, fitted: SearchConfig, left: float) -> None: ...

    def final_finished(self, winner: Winner) -> None: ...


@dataclass(frozen=True)
class SearchResult:
    """The outcome of a search: its winner (see rescoring.winner) and every trial of the study."""

    study: str
    storage: str
    winner: Winner
    trials: tuple[TrialRecord, ...]
    time_up: bool = False  # the time budget ended it before the trial budget was spent

    @property
    def best(self) -> TrialRecord:
        """The winning trial."""
        return self.winner.trial

    def to_dict(self) -> dict[str, Any]:
        """The JSON object that `tuner search --json` prints: `loss` is the reported one."""
        return {
            "trial": self.best.number,
            **self.winner.to_dict(),
            "params": self.best.params,
            "study": self.study,
            "storage": self.storage,
        }


def best_trial(trials: Sequence[TrialRecord]) -> TrialRecord | None:
    """The completed trial with the lowest search-time loss (the earliest on ties), adjusted
    for split difficulty as the search compares trials (`winner.ranked`)."""
    order = ranked(trials)
    return order[0] if order else None


def as_compared(trial: TrialRecord, trials: Sequence[TrialRecord]) -> TrialRecord:
    """The trial as the search compares it: adjusted for split difficulty when it can be."""
    return next((t for t in comparable(trials) if t.id == trial.id), trial)


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
    stored = validate_config(existing.config) if "space" in existing.config else None
    old_space = stored.full_space() if stored else {}
    differing = space_differences(old_space, config.full_space())
    if differing:
        raise StudyError(
            f"--resume: the search space differs from study '{name}' in {', '.join(differing)}; "
            "resume with the study's space or start another --study"
        )
    was = stored.search.comparison if stored else "plain"
    if was != config.search.comparison:
        raise StudyError(
            f"--resume: study '{name}' compares trials with search.comparison={was}, not "
            f"{config.search.comparison}; resume with --set search.comparison={was} or start "
            "another --study"
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
        raise  # a signal: run_search marks the trial interrupted
    except UsageError as exc:
        failed("error", str(exc))
        raise
    except Exception as exc:  # a bug or a framework error in one trial must not end the search
        if signals.received is not None:
            raise signals.stopped() from exc
        return failed("crashed", f"{type(exc).__name__}: {exc}")
    raced = {"seeds": list(score.race_seeds), "seconds": score.race_seconds}
    return storage.finish_trial(
        trial,
        state=TrialState.COMPLETE,
        loss=score.loss,
        loss_std=score.loss_std,
        split_losses=list(score.split_losses),
        epochs=list(score.epochs),
        seconds=score.seconds,
        baselines=list(score.baselines) or None,
        **({"race": raced} if score.race_seeds else {}),
    )


# Failures that say a point was refused or stopped, not that the setup is broken. A worker
# that died does count: a setup that kills every worker must end the search.
_NOT_A_STREAK = frozenset({"too_large", "interrupted", "stale"})


def check_failure_streak(trials: Sequence[TrialRecord], limit: int) -> None:
    streak: list[TrialRecord] = []
    for trial in reversed(trials):
        if trial.state == TrialState.COMPLETE:
            break
        if trial.state == TrialState.FAILED and trial.error_kind not in _NOT_A_STREAK:
            streak.append(trial)
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


@contextlib.contextmanager
def ending_cleanly(
    storage: Storage, study: StudyRecord, heartbeat: Heartbeat, signals: Signals
) -> Iterator[None]:
    """Whatever ends the search, no trial of this process stays "running" (--resume runs it
    again); Ctrl-C and SIGTERM come out as SearchInterrupted."""

    def interrupted(stop: SearchInterrupted) -> None:
        kind = "Ctrl-C" if stop.signum == signal.SIGINT else f"signal {stop.signum}"
        fail_own(storage, study, heartbeat, f"interrupted by {kind}")

    try:
        with signals.stopping(interrupted):
            yield
    except SearchInterrupted:
        raise
    except BaseException:
        with contextlib.suppress(Exception):
            fail_own(storage, study, heartbeat, "the search stopped with an error")
        raise


def report_start(
    storage: Storage, study: StudyRecord, reporter: Reporter, budget: int
) -> list[TrialRecord]:
    """Tell `reporter` the search starts (the trials that count so far, and the interrupted
    ones that run again); returns the study's trials."""
    trials = storage.trials(study)
    retried = {t.retry_of for t in trials}
    rerun = sum(1 for t in trials if t.error_kind in RERUN_KINDS and t.number not in retried)
    reporter.search_started(study.name, budget, sum(t.counts for t in trials), rerun)
    return trials


def run_search(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: Objective,
    reporter: Reporter,
    deadline: Deadline | None = None,
    asker: Asker | None = None,
    signals: Signals | None = None,
) -> SearchResult:
    """Run trials until `init_points + n_iter` of them have ended or `deadline` has passed
    (no trial starts once the time left is its reserve; the running one finishes); returns
    the best.

    With `search.race_top`, trials that rank on top are raced on extra splits (racing.py),
    no round past `deadline.room`.
    `asker` chooses the trials (by default from the config and its warm-start study);
    `signals` catches Ctrl-C and SIGTERM (pass the caller's to cover its cleanup too).
    """
    if deadline is None:
        deadline = Deadline(config.search.time_budget)
    objective = racing(objective, config, storage, study, deadline.room)
    asker = asker or Asker(config, warm_trials(config))
    budget = config.search.budget
    trials = report_start(storage, study, reporter, budget)
    signals = signals or Signals()
    heartbeat = Heartbeat(storage, config.search.heartbeat)
    # Signals outermost: a second signal during ending_cleanly's writes leaves at once.
    with signals, ending_cleanly(storage, study, heartbeat, signals), heartbeat:
        while sum(t.counts for t in trials) < budget and not deadline.passed(trials):
            trial = storage.ask(study, asker.choose, config.search.grace).trial
            if trial is None:  # the rest of the budget runs on other boxes
                time.sleep(min(config.search.heartbeat, 2.0))
                trials = storage.trials(study)
                continue
            reporter.trial_started(trial)
            with heartbeat.running(trial), contextlib.suppress(TrialRejected):
                finished = run_trial(storage, trial, objective, signals)
                trials = storage.trials(study)
                reporter.trial_finished(as_compared(finished, trials), best_trial(trials))
            trials = storage.trials(study)
            check_failure_streak(trials, config.search.max_consecutive_failures)
    time_up = sum(t.counts for t in trials) < budget
    return finish_search(storage, study, reporter, time_up)


def finish_search(
    storage: Storage, study: StudyRecord, reporter: Reporter, time_up: bool = False
) -> SearchResult:
    """Show the end of the search and return its winner (SearchFailed without one).

    `time_up`: the time budget ended the search before its trial budget was spent.
    """
    trials = storage.trials(study)
    reporter.search_finished(trials)
    return _result(storage, study, trials, time_up)


def study_result(storage: Storage, study: StudyRecord, time_up: bool = False) -> SearchResult:
    """The study's winner and trials as stored now (SearchFailed without a completed trial)."""
    return _result(storage, study, storage.trials(study), time_up)


def _result(
    storage: Storage, study: StudyRecord, trials: Sequence[TrialRecord], time_up: bool
) -> SearchResult:
    best = winner(trials)
    if best is None:
        raise SearchFailed(
            f"no trial of study '{study.name}' completed; see the errors with --debug or the "
            "study database, and check the config's bounds"
        )
    return SearchResult(study.name, storage.url, best, tuple(trials), time_up)

"""`--events FILE`: each event of a search as one JSON object per line, for programs to follow."""

import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from tuner.engine.reporter import Reporter
from tuner.errors import TunerError, UsageError
from tuner.study.store import FinalScore, TrialRecord
from tuner.study.winner import Winner


def open_events(path: Path) -> "EventsReporter":
    """The reporter appending to `path` (created if needed); UsageError when it cannot be."""
    try:
        handle = path.open("a", encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(
            f"--events: cannot write {path} ({reason}); give a file in a folder you can write"
        ) from None
    return EventsReporter(handle)


@contextmanager
def following(path: Path | None) -> Iterator["EventsReporter | None"]:
    """The `--events` reporter (None without the option), closed after; when the command fails
    its `done` line carries the error."""
    if path is None:
        yield None
        return
    events = open_events(path)
    try:
        yield events
    except (Exception, KeyboardInterrupt) as exc:
        events.done(error=str(exc) if isinstance(exc, TunerError) else repr(exc))
        raise
    finally:
        events.close()


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as null: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _trial(trial: TrialRecord) -> dict[str, Any]:
    """The fields every event about a trial carries."""
    return {"trial": trial.number, "params": trial.params, "seed": trial.seed}


def _scored(trial: TrialRecord, score: FinalScore | None) -> dict[str, Any]:
    """A re-score's or a confirmation's fields: its loss and splits, or how it failed."""
    fields: dict[str, Any] = {"trial": trial.number, "search_loss": trial.loss}
    if score is not None:
        fields.update(score.to_dict(), ok=score.ok, loss_se=score.loss_se if score.ok else None)
    return fields


class EventsReporter(Reporter):
    """Writes each event as a JSON line with `event` and `time` (ISO 8601, UTC), then flushes,
    so that a program can follow the file while the search runs."""

    def __init__(self, handle: IO[str]) -> None:
        self._handle = handle
        self._lock = threading.Lock()  # slots in threads may report at once
        self._eta: float | None = None

    def write(self, event: str, **fields: Any) -> None:
        """One line: the event's name, the time, its fields."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = json.dumps(_finite({"event": event, "time": now, **fields}), default=str)
        with self._lock:
            self._handle.write(line + "\n")
            self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def done(self, winner: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """The last line: the winner (`tuner search --json`'s object), or the error that ended
        the command."""
        self.write("done", ok=error is None, winner=winner, error=error)

    def search_started(self, study: str, budget: int, done: int, rerun: int, end: str) -> None:
        self.write("search_started", study=study, budget=budget, done=done, rerun=rerun, end=end)

    def trial_started(self, trial: TrialRecord) -> None:
        self.write("trial_started", **_trial(trial))

    def trial_progress(self, trial: TrialRecord, epoch: int, loss: float) -> None:
        self.write("epoch", trial=trial.number, epoch=epoch, loss=loss)

    def eta_changed(self, seconds: float | None) -> None:
        self._eta = seconds

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        self.write(
            "trial_finished",
            **_trial(trial),
            state=trial.state.value,
            loss=trial.loss,
            loss_std=trial.loss_std,
            split_losses=list(trial.split_losses),
            epochs=list(trial.epochs),
            seconds=trial.seconds,
            metrics=trial.attrs.get("metrics"),
            error_kind=trial.error_kind,
            error=trial.error,
            best=None if best is None else {"trial": best.number, "loss": best.loss},
            eta_seconds=self._eta,
        )

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        """Not written: `trial_started` and `trial_finished` say as much."""

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        """Not written: `final_started` or `done` follows."""

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        finalists = [t.number for t in candidates]
        self.write("final_started", finalists=finalists, splits=splits, todo=todo)

    def final_scored(self, trial: TrialRecord) -> None:
        self.write("final_scored", **_scored(trial, trial.final))

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        self.write("confirm_started", trial=trial.number, splits=splits)

    def confirm_scored(self, trial: TrialRecord) -> None:
        self.write("confirm_scored", **_scored(trial, trial.confirm))

    def final_finished(self, winner: Winner) -> None:
        """Not written: `done` carries the winner, with or without an end."""

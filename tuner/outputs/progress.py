"""Progress and logs of a search on stderr: a reporter is handed each event of the search."""

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from tuner.engine.reporter import Reporter
from tuner.outputs.report import format_params, format_value, plain_console
from tuner.study.store import FinalScore, TrialRecord, TrialState
from tuner.study.winner import Winner


def stderr_console() -> Console:
    """The console for progress and logs."""
    return plain_console(stderr=True)


class QuietReporter(Reporter):
    """Shows nothing (`--quiet`)."""


# A trial shorter than this shows no epochs: they would flicker past unread.
LONG_TRIAL = 3.0


def format_duration(seconds: float) -> str:
    """`45s`, `3m10s` or `2h05m`."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


class _EtaColumn(ProgressColumn):
    """The estimated time left, counting down between estimates (blank while unknown)."""

    def render(self, task: Task) -> Text:
        until = task.fields.get("until")
        if until is None:
            return Text("")
        return Text(f"eta {format_duration(max(0.0, until - time.monotonic()))}", style="cyan")


def _bar(console: Console) -> Progress:
    text = TextColumn("[bold]{task.description}")
    columns = (text, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), _EtaColumn())
    progress = Progress(*columns, console=console, transient=True)
    progress.start()
    return progress


@dataclass
class _Steps:
    """The end's steps (finalists, or the confirmation's one) and when they should be done."""

    total: int
    guess: float | None  # seconds of one step before one is measured
    started: float = field(default_factory=time.monotonic)
    done: int = 0

    def until(self) -> float | None:
        """When the last step should end (monotonic), from the steps done so far."""
        now = time.monotonic()
        per = (now - self.started) / self.done if self.done else self.guess
        return None if not per else now + per * (self.total - self.done)


def _step_guess(trial: TrialRecord, splits: int) -> float | None:
    """Seconds of scoring `trial` on `splits` splits, from its search-time seconds."""
    if not trial.seconds or not trial.split_losses:
        return None
    return trial.seconds / len(trial.split_losses) * splits


class ConsoleReporter(Reporter):
    """A progress bar (on a terminal) and a line per trial; a table of the best at the end; the
    time left in the bar, or in each line when stderr is a file."""

    def __init__(
        self, console: Console, names: Sequence[str], long_trial: float = LONG_TRIAL
    ) -> None:
        self._console = console
        self._long_trial = long_trial
        self._names = list(names)
        self._progress: Progress | None = None
        self._task: Any = None
        self._eta: float | None = None
        self._slots: dict[str | None, int | None] = {}
        self._started: dict[int, float] = {}
        self._epochs: dict[int, tuple[int, float]] = {}
        self._steps: _Steps | None = None
        self._splits = 0

    def search_started(self, study: str, budget: int, done: int, rerun: int, end: str) -> None:
        extra = f", {rerun} interrupted to run again" if rerun else ""
        self._console.print(f"study {study}: {done} of {budget} trials done{extra}")
        self._console.print(end)
        if self._console.is_terminal:
            self._progress = _bar(self._console)
            self._task = self._progress.add_task("trials", total=budget, completed=done)

    def trial_started(self, trial: TrialRecord) -> None:
        self._started[trial.number] = time.monotonic()
        if None in self._slots or not self._slots:  # one slot: no slots_changed comes
            self._slots = {None: trial.number}
        self._describe()

    def trial_progress(self, trial: TrialRecord, epoch: int, loss: float) -> None:
        self._epochs[trial.number] = (epoch, loss)
        self._describe()

    def eta_changed(self, seconds: float | None) -> None:
        self._eta = seconds
        if self._progress is not None:
            until = None if seconds is None else time.monotonic() + seconds
            self._progress.update(self._task, until=until)

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        params = format_params(trial.params, self._names)
        seconds = f"{trial.seconds:.1f}s" if trial.seconds is not None else ""
        if trial.state == TrialState.COMPLETE:
            result = f"loss {trial.loss:.4f} ± {trial.loss_std or 0.0:.4f}"
        else:
            result = f"[red]failed ({trial.error_kind})[/red]: {trial.error}"
        best_text = f"best {best.loss:.4f} (#{best.number})" if best is not None else "best -"
        line = f"trial {trial.number:>3}  {params}  {result}  {best_text}  {seconds}"
        self._console.print(line + self._eta_text(self._eta))
        self._started.pop(trial.number, None)
        self._epochs.pop(trial.number, None)
        if self._progress is not None and trial.counts:
            self._progress.advance(self._task)

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        self._slots = dict(running)
        self._describe()

    def _describe(self) -> None:
        """The bar's description: each slot's trial, with its epoch once it runs long."""
        if self._progress is None:
            return
        parts = []
        for slot, number in self._slots.items():
            if slot is None:  # one slot
                parts.append(f"trial {number}{self._epoch_text(number)}")
            else:
                trial = "-" if number is None else f"#{number}"
                parts.append(f"{slot}: {trial}{self._epoch_text(number)}")
        self._progress.update(self._task, description="  ".join(parts), refresh=True)

    def _epoch_text(self, number: int | None) -> str:
        if number not in self._epochs or number is None:
            return ""
        if time.monotonic() - self._started.get(number, 0.0) < self._long_trial:
            return ""
        epoch, loss = self._epochs[number]
        return f" epoch {epoch} loss {loss:.4f}"

    def _eta_text(self, seconds: float | None) -> str:
        """`  eta 3m10s` in a line when stderr is not a terminal (the bar shows it there)."""
        if self._console.is_terminal or seconds is None or seconds < 1.0:
            return ""
        return f"  eta {format_duration(seconds)}"

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        self._stop()
        self._console.print(trials_table(trials, self._names, limit=5, title="best trials"))
        failed = sum(1 for t in trials if t.state == TrialState.FAILED)
        if failed:
            self._console.print(f"{failed} trial(s) failed; they are kept in the study")

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._progress = None

    def _start_steps(self, description: str, steps: _Steps) -> str:
        """Start the end's bar (on a terminal) over `steps`; the ETA text for a line."""
        self._steps = steps
        until = steps.until()
        if self._console.is_terminal:
            self._stop()
            self._progress = _bar(self._console)
            self._task = self._progress.add_task(description, total=steps.total, until=until)
        return self._eta_text(None if until is None else until - time.monotonic())

    def _step_done(self) -> str:
        """One step of the end is done: the bar advances; the ETA text for a line."""
        if self._steps is None:
            return ""
        self._steps.done += 1
        until = self._steps.until() if self._steps.done < self._steps.total else None
        if self._progress is not None:
            self._progress.update(self._task, advance=1, until=until)
        return self._eta_text(None if until is None else until - time.monotonic())

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        numbers = ", ".join(f"#{t.number}" for t in candidates)
        done = len(candidates) - todo
        kept = f"; {done} already re-scored" if done else ""
        guesses = [g for t in candidates[done:] if (g := _step_guess(t, splits))]
        guess = sum(guesses) / len(guesses) if guesses else None
        self._splits = splits
        eta = self._start_steps("re-scoring the finalists", _Steps(todo, guess)) if todo else ""
        self._console.print(
            f"re-scoring the best {len(candidates)} trial(s) on {splits} fresh splits: "
            f"{numbers}{kept}{eta}"
        )

    def final_scored(self, trial: TrialRecord) -> None:
        assert trial.final is not None
        line = _scored_line(trial, trial.final, "re-scored", "re-score", "dropped")
        self._console.print(line + self._step_done())

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        eta = self._start_steps(
            f"confirming #{trial.number}", _Steps(1, self._confirm_guess(trial, splits))
        )
        self._console.print(
            f"confirming the winner #{trial.number} as it is exported, on {splits} fresh "
            f"splits (each trains it on its training part alone){eta}"
        )

    def _confirm_guess(self, trial: TrialRecord, splits: int) -> float | None:
        """Seconds of the confirmation: each of its splits trains as many networks as a trial
        call (an ensemble), so it costs about a call, measured on the re-score when it ran."""
        if not trial.split_losses:
            return None
        call = trial.seconds
        measured = self._steps
        if measured is not None and measured.done and self._splits:
            calls = math.ceil(self._splits / len(trial.split_losses))
            call = (time.monotonic() - measured.started) / measured.done / calls
        return call * splits if call else None

    def confirm_scored(self, trial: TrialRecord) -> None:
        assert trial.confirm is not None
        kept = f"its {'re-scored' if trial.final is not None else 'search-time'} loss is reported"
        self._step_done()
        self._console.print(_scored_line(trial, trial.confirm, "confirmed", "confirmation", kept))

    def final_finished(self, winner: Winner) -> None:
        self._stop()
        self._console.print(f"winner: {winner.describe()}")


def _scored_line(trial: TrialRecord, score: FinalScore, verb: str, noun: str, fallback: str) -> str:
    """`trial  12  re-scored 0.6601 ± 0.0062 (se)  search 0.6402  41.0s`, or its failure."""
    if score.ok:
        result = f"{verb} {score.loss:.4f} ± {score.loss_se:.4f} (se)"
    else:
        result = f"[red]{noun} failed ({score.error_kind})[/red]: {score.error}; {fallback}"
    seconds = f"  {score.seconds:.1f}s" if score.seconds is not None else ""
    return f"trial {trial.number:>3}  {result}  search {trial.loss:.4f}{seconds}"


def trials_table(
    trials: Sequence[TrialRecord], names: Sequence[str], limit: int, title: str
) -> Table:
    """The completed trials with the lowest search-time losses."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.loss is not None]
    done.sort(key=lambda t: (t.loss, t.number))
    table = Table(title=title, title_justify="left")
    for column in ("trial", *names, "loss", "std", "epochs", "seconds"):
        table.add_column(column, justify="right")
    for trial in done[:limit]:
        table.add_row(
            str(trial.number),
            *(format_value(trial.params.get(n)) for n in names),
            f"{trial.loss:.4f}",
            f"{trial.loss_std or 0.0:.4f}",
            ",".join(str(e) for e in trial.epochs),
            f"{trial.seconds or 0.0:.1f}",
        )
    return table

"""Progress and logs of a search on stderr: a reporter is handed each event of the search."""

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner.engine.reporter import Reporter
from tuner.outputs.report import format_params, format_value, plain_console
from tuner.study.store import FinalScore, TrialRecord, TrialState
from tuner.study.winner import Winner


def stderr_console() -> Console:
    """The console for progress and logs."""
    return plain_console(stderr=True)


class QuietReporter(Reporter):
    """Shows nothing (`--quiet`)."""


class ConsoleReporter(Reporter):
    """A progress bar over the budget and a line per trial; a table of the best at the end."""

    def __init__(self, console: Console, names: Sequence[str]) -> None:
        self._console = console
        self._names = list(names)
        self._progress: Progress | None = None
        self._task: Any = None

    def search_started(self, study: str, budget: int, done: int, rerun: int, end: str) -> None:
        extra = f", {rerun} interrupted to run again" if rerun else ""
        self._console.print(f"study {study}: {done} of {budget} trials done{extra}")
        self._console.print(end)
        if self._console.is_terminal:
            text = TextColumn("[bold]{task.description}")
            columns = (text, BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._progress = Progress(*columns, console=self._console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("trials", total=budget, completed=done)

    def trial_started(self, trial: TrialRecord) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=f"trial {trial.number}")

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        params = format_params(trial.params, self._names)
        seconds = f"{trial.seconds:.1f}s" if trial.seconds is not None else ""
        if trial.state == TrialState.COMPLETE:
            result = f"loss {trial.loss:.4f} ± {trial.loss_std or 0.0:.4f}"
        else:
            result = f"[red]failed ({trial.error_kind})[/red]: {trial.error}"
        best_text = f"best {best.loss:.4f} (#{best.number})" if best is not None else "best -"
        self._console.print(f"trial {trial.number:>3}  {params}  {result}  {best_text}  {seconds}")
        if self._progress is not None and trial.counts:
            self._progress.advance(self._task)

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        text = "  ".join(f"{slot}: {'-' if n is None else f'#{n}'}" for slot, n in running.items())
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._console.print(trials_table(trials, self._names, limit=5, title="best trials"))
        failed = sum(1 for t in trials if t.state == TrialState.FAILED)
        if failed:
            self._console.print(f"{failed} trial(s) failed; they are kept in the study")

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        numbers = ", ".join(f"#{t.number}" for t in candidates)
        done = len(candidates) - todo
        kept = f"; {done} already re-scored" if done else ""
        self._console.print(
            f"re-scoring the best {len(candidates)} trial(s) on {splits} fresh splits: "
            f"{numbers}{kept}"
        )

    def final_scored(self, trial: TrialRecord) -> None:
        assert trial.final is not None
        self._console.print(_scored_line(trial, trial.final, "re-scored", "re-score", "dropped"))

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        self._console.print(
            f"confirming the winner #{trial.number} on {splits} other fresh splits "
            "(the lowest of the finalists' means is biased low)"
        )

    def confirm_scored(self, trial: TrialRecord) -> None:
        assert trial.confirm is not None
        kept = "its re-scored loss is reported"
        self._console.print(_scored_line(trial, trial.confirm, "confirmed", "confirmation", kept))

    def final_finished(self, winner: Winner) -> None:
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

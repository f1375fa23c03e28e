"""Everything the terminal shows: progress and logs on stderr, results on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner.evaluate import Score
from tuner.search import SearchResult
from tuner.store import TrialRecord, TrialState


def format_value(value: Any) -> str:
    """A hyperparameter value, short: 4 significant digits for reals."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_params(params: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """`name=value` pairs, only `names` when given."""
    shown = names if names is not None else list(params)
    return " ".join(f"{n}={format_value(params[n])}" for n in shown if n in params)


def stderr_console() -> Console:
    """The console for progress and logs; plain lines when stderr is not a terminal."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console.width = 160  # a log file has no width; do not squeeze the tables
    return console


class QuietReporter:
    """Shows nothing (`--quiet`)."""

    def search_started(self, study: str, budget: int, done: int, rerun: int) -> None:
        """Nothing."""

    def trial_started(self, trial: TrialRecord) -> None:
        """Nothing."""

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        """Nothing."""

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        """Nothing."""


class ConsoleReporter:
    """A progress bar over the budget and a line per trial; a table of the best at the end."""

    def __init__(self, console: Console, names: Sequence[str]) -> None:
        self._console = console
        self._names = list(names)
        self._progress: Progress | None = None
        self._task: Any = None

    def search_started(self, study: str, budget: int, done: int, rerun: int) -> None:
        """Say what is about to run and start the bar on a terminal."""
        extra = f", {rerun} interrupted to run again" if rerun else ""
        self._console.print(f"study {study}: {done} of {budget} trials done{extra}")
        if self._console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("trials", total=budget, completed=done)

    def trial_started(self, trial: TrialRecord) -> None:
        """Show which trial runs now."""
        if self._progress is not None:
            self._progress.update(self._task, description=f"trial {trial.number}")

    def trial_finished(self, trial: TrialRecord, best: TrialRecord | None) -> None:
        """One line: number, parameters, loss, best so far, seconds."""
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

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        """Stop the bar and show the best trials."""
        if self._progress is not None:
            self._progress.stop()
        self._console.print(trials_table(trials, self._names, limit=5, title="best trials"))
        failed = sum(1 for t in trials if t.state == TrialState.FAILED)
        if failed:
            self._console.print(f"{failed} trial(s) failed; they are kept in the study")


def trials_table(
    trials: Sequence[TrialRecord], names: Sequence[str], limit: int, title: str
) -> Table:
    """The completed trials with the lowest losses."""
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


def _stdout() -> Console:
    console = Console(file=sys.stdout, soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console.width = 160
    return console


def print_json(data: Mapping[str, Any]) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def print_search_result(result: SearchResult, names: Sequence[str], as_json: bool) -> None:
    """The best trial on stdout: a short table, or one JSON object."""
    if as_json:
        print_json(result.to_dict())
        return
    best = result.best
    table = Table(title=f"best of study {result.study}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("trial", str(best.number))
    table.add_row("loss", f"{best.loss:.4f} ± {best.loss_std or 0.0:.4f}")
    for name, value in best.params.items():
        table.add_row(name, format_value(value))
    table.add_row("storage", result.storage)
    _stdout().print(table)


def print_score(score: Score, params: Mapping[str, Any], architecture: str, as_json: bool) -> None:
    """The result of `tuner evaluate` on stdout."""
    if as_json:
        print_json({**score.to_dict(), "params": dict(params), "architecture": architecture})
        return
    out = _stdout()
    out.print(f"params        {format_params(params)}")
    out.print(f"architecture  {architecture}")
    out.print(f"loss          {score.loss:.4f} ± {score.loss_std:.4f}")
    out.print(f"split losses  {', '.join(f'{x:.4f}' for x in score.split_losses)}")
    out.print(f"epochs        {', '.join(str(e) for e in score.epochs)}")
    out.print(f"seconds       {score.seconds:.1f}")


def print_error(message: str) -> None:
    """A one-line error on stderr."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()

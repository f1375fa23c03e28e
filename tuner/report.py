"""Everything the terminal shows: progress and logs on stderr, results on stdout."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner.budget import describe_cut
from tuner.config import SearchConfig
from tuner.evaluate import Score
from tuner.results import StudyResults
from tuner.search import SearchResult
from tuner.store import FinalScore, TrialRecord, TrialState
from tuner.winner import Winner


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

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        """Nothing."""

    def final_fitted(self, configured: SearchConfig, fitted: SearchConfig, left: float) -> None:
        """Nothing."""

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        """Nothing."""

    def final_scored(self, trial: TrialRecord) -> None:
        """Nothing."""

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        """Nothing."""

    def confirm_scored(self, trial: TrialRecord) -> None:
        """Nothing."""

    def difficulty_started(self, trial: TrialRecord, splits: int) -> None:
        """Nothing."""

    def difficulty_failed(self, error: str) -> None:
        """Nothing."""

    def final_finished(self, winner: Winner) -> None:
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
            if trial.race_seeds:
                result += f" (raced: {len(trial.split_losses)} splits)"
        else:
            result = f"[red]failed ({trial.error_kind})[/red]: {trial.error}"
        best_text = f"best {best.loss:.4f} (#{best.number})" if best is not None else "best -"
        self._console.print(f"trial {trial.number:>3}  {params}  {result}  {best_text}  {seconds}")
        if self._progress is not None and trial.counts:
            self._progress.advance(self._task)

    def slots_changed(self, running: Mapping[str, int | None]) -> None:
        """With several workers: which trial each worker (and its GPU) runs, on the bar."""
        text = "  ".join(
            f"{slot}: #{n}" if n is not None else f"{slot}: -" for slot, n in running.items()
        )
        if self._progress is not None:
            self._progress.update(self._task, description=text)

    def search_finished(self, trials: Sequence[TrialRecord]) -> None:
        """Stop the bar and show the best trials."""
        if self._progress is not None:
            self._progress.stop()
        self._console.print(trials_table(trials, self._names, limit=5, title="best trials"))
        failed = sum(1 for t in trials if t.state == TrialState.FAILED)
        if failed:
            self._console.print(f"{failed} trial(s) failed; they are kept in the study")

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None:
        """Which finalists are re-scored, on how many fresh splits."""
        numbers = ", ".join(f"#{t.number}" for t in candidates)
        done = len(candidates) - todo
        kept = f"; {done} already re-scored" if done else ""
        self._console.print(
            f"re-scoring the best {len(candidates)} trial(s) on {splits} fresh splits: "
            f"{numbers}{kept}"
        )

    def final_scored(self, trial: TrialRecord) -> None:
        """One line per re-scored finalist: its re-scored and search-time losses."""
        assert trial.final is not None
        self._console.print(_scored_line(trial, trial.final, "re-scored", "re-score", "dropped"))

    def confirm_started(self, trial: TrialRecord, splits: int) -> None:
        """Which trial won, and that its loss is measured again on other splits."""
        self._console.print(
            f"confirming the winner #{trial.number} on {splits} other fresh splits "
            "(the lowest of the finalists' means is biased low)"
        )

    def confirm_scored(self, trial: TrialRecord) -> None:
        """The winner's confirmation loss beside its re-scored one."""
        assert trial.confirm is not None
        fallback = "its re-scored loss is reported"
        self._console.print(
            _scored_line(trial, trial.confirm, "confirmed", "confirmation", fallback)
        )

    def difficulty_started(self, trial: TrialRecord, splits: int) -> None:
        """That a baseline measures how hard the winner's splits are."""
        self._console.print(
            f"measuring split difficulty: a baseline on the winner #{trial.number}'s splits "
            f"and on {splits} other fresh splits"
        )

    def difficulty_failed(self, error: str) -> None:
        """Why the winner's loss is not adjusted."""
        self._console.print(f"[yellow]split difficulty not measured ({error})[/yellow]")

    def final_fitted(self, configured: SearchConfig, fitted: SearchConfig, left: float) -> None:
        """How the time budget cut the final re-score."""
        self._console.print(f"[yellow]{describe_cut(configured, fitted, left)}[/yellow]")

    def final_finished(self, winner: Winner) -> None:
        """The winner, by its re-scored loss."""
        self._console.print(f"winner: {winner.describe()}")


def _scored_line(trial: TrialRecord, score: FinalScore, verb: str, noun: str, fallback: str) -> str:
    """`trial  12  re-scored 0.6601 ± 0.0062 (se)  search 0.6402  41.0s`, or its failure:
    `[red]re-score failed (diverged)[/red]: <error>; dropped  search ...`."""
    if score.ok:
        result = f"{verb} {score.loss:.4f} ± {score.loss_se:.4f} (se)"
    else:
        result = f"[red]{noun} failed ({score.error_kind})[/red]: {score.error}; {fallback}"
    seconds = f"  {score.seconds:.1f}s" if score.seconds is not None else ""
    return f"trial {trial.number:>3}  {result}  search {trial.loss:.4f}{seconds}"


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
    _add_loss_rows(table, result.winner)
    for name, value in best.params.items():
        table.add_row(name, format_value(value))
    table.add_row("storage", result.storage)
    _stdout().print(table)


def _add_loss_rows(table: Table, winner: Winner) -> None:
    """The reported loss with its standard error, and the search-time loss beside it."""
    trial = winner.trial
    search = f"{winner.search_loss:.4f} ± {trial.loss_std or 0.0:.4f} (std, "
    search += f"{len(trial.split_losses)} splits)"
    if not winner.rescored:
        table.add_row("loss", f"{search} (not re-scored)")
        return
    chosen = f"{winner.final_splits} fresh splits, best of {winner.final_candidates}"
    how = f"{winner.confirm_splits} confirmation splits" if winner.confirmed else chosen
    table.add_row("loss", f"{winner.loss:.4f} ± {winner.loss_se:.4f} (se, {how})")
    if winner.raw_loss is not None:
        raw = f"{winner.raw_loss:.4f} ± {winner.raw_loss_se:.4f} (se), before"
        table.add_row("unadjusted", f"{raw} the split-difficulty adjustment")
    if winner.confirmed:
        table.add_row("chosen on", f"{winner.final_loss:.4f} ({chosen})")
    table.add_row("search loss", search)


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


# --- reading a finished study: tuner trials / best / report / export / predict -----------


def _exact(value: Any) -> str:
    """A value in full precision, for CSV (true/false in lower case, empty for None)."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else repr(value).strip("'")


def _trial_row(trial: TrialRecord, names: Sequence[str], exact: bool = False) -> list[str]:
    shown = _exact if exact else format_value
    loss = "" if trial.loss is None else (_exact(trial.loss) if exact else f"{trial.loss:.4f}")
    std = (
        ""
        if trial.loss_std is None
        else (_exact(trial.loss_std) if exact else f"{trial.loss_std:.4f}")
    )
    error = f"{trial.error_kind}: {trial.error}" if trial.error_kind else ""
    final = trial.final
    if final is None:
        rescored = ["", ""] if exact else [""]
    elif not final.ok:
        rescored = [f"failed ({final.error_kind})", ""] if exact else ["failed"]
    elif exact:
        rescored = [_exact(final.loss), _exact(final.loss_se)]
    else:
        rescored = [f"{final.loss:.4f}"]
    return [
        str(trial.number),
        trial.state.value,
        *(shown(trial.params.get(n)) for n in names),
        loss,
        std,
        ",".join(str(e) for e in trial.epochs),
        ""
        if trial.seconds is None
        else (_exact(trial.seconds) if exact else f"{trial.seconds:.1f}"),
        error,
        *rescored,
    ]


def print_trials(results: StudyResults, fmt: str) -> None:
    """Every trial of a study on stdout: a table, CSV (every parameter) or one JSON object."""
    if fmt == "json":
        trials = [t.to_dict() for t in results.trials]
        print_json({"study": results.name, "storage": results.storage, "trials": trials})
        return
    names = list(results.names) if fmt == "table" else _all_params(results)
    header = ["trial", "state", *names, "loss", "loss_std", "epochs", "seconds", "error"]
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*header, "final_loss", "final_loss_se"])
        writer.writerows(_trial_row(t, names, exact=True) for t in results.trials)
        sys.stdout.flush()
        return
    table = Table(title=f"trials of study {results.name}", title_justify="left")
    for column in [*header, "final"]:
        table.add_column(column, justify="left" if column in {"state", "error"} else "right")
    for trial in results.trials:
        table.add_row(*_trial_row(trial, names))
    _stdout().print(table)


def _all_params(results: StudyResults) -> list[str]:
    names: list[str] = []
    for trial in results.trials:
        names += [n for n in trial.params if n not in names]
    return names


def print_best(results: StudyResults, architecture: str | None, as_json: bool) -> None:
    """The best trial of a study on stdout, with its decoded network when known."""
    winner = results.winner
    best = winner.trial
    if as_json:
        extra = {"architecture": architecture, "study": results.name, "storage": results.storage}
        print_json({**best.to_dict(), **winner.to_dict(), **extra})
        return
    table = Table(title=f"best of study {results.name}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("trial", str(best.number))
    _add_loss_rows(table, winner)
    table.add_row("split losses", ", ".join(f"{x:.4f}" for x in best.split_losses))
    if winner.rescored and best.final is not None:
        table.add_row("fresh splits", ", ".join(f"{x:.4f}" for x in best.final.split_losses))
    if winner.confirmed and best.confirm is not None:
        confirmed = ", ".join(f"{x:.4f}" for x in best.confirm.split_losses)
        table.add_row("confirmation splits", confirmed)
    table.add_row("epochs", ", ".join(str(e) for e in best.epochs))
    table.add_row("seconds", f"{best.seconds or 0.0:.1f}")
    for name, value in best.params.items():
        table.add_row(name, format_value(value))
    if architecture:
        table.add_row("architecture", architecture)
    table.add_row("storage", results.storage)
    _stdout().print(table)


def print_written(summary: Mapping[str, Any], lines: Sequence[str], as_json: bool) -> None:
    """What a command wrote: one JSON object, or a few `key  value` lines."""
    if as_json:
        print_json(summary)
        return
    out = _stdout()
    for line in lines:
        out.print(line)


def print_text(text: str) -> None:
    """Text as is on stdout (a starter config)."""
    sys.stdout.write(text)
    sys.stdout.flush()

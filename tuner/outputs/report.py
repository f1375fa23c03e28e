"""Results on stdout (tables, JSON, CSV) and error lines on stderr; progress is `progress`'s."""

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tuner.engine.loop import SearchResult
from tuner.study.results import StudyResults
from tuner.study.store import TrialRecord
from tuner.study.winner import Winner
from tuner.training.evaluate import Score


def format_value(value: Any) -> str:
    """A hyperparameter value, short: 4 significant digits for reals."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_params(params: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """`name=value` pairs, only `names` when given."""
    shown = names if names is not None else list(params)
    return " ".join(f"{n}={format_value(params[n])}" for n in shown if n in params)


def plain_console(stderr: bool = False) -> Console:
    """Rich's console on stdout (or stderr); plain lines when it is not a terminal."""
    console = Console(stderr=stderr, soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console.width = 160  # a log file has no width: do not squeeze the tables
    return console


def print_json(data: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


def print_search_result(result: SearchResult, names: Sequence[str], as_json: bool) -> None:
    """The best trial on stdout: a short table, or one JSON object."""
    if as_json:
        print_json(result.to_dict())
        return
    table = _best_table(result.study, result.winner)
    for name, value in result.best.params.items():
        table.add_row(name, format_value(value))
    table.add_row("storage", result.storage)
    plain_console().print(table)


def _best_table(study: str, winner: Winner) -> Table:
    """The winner's number, its reported loss and standard error, and apart its search loss."""
    table = Table(title=f"best of study {study}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("trial", str(winner.trial.number))
    how = "fresh splits" if winner.rescored else "search-time splits; not re-scored"
    loss = f"{winner.loss:.4f} ± {winner.loss_se:.4f} ({winner.reported_splits} {how})"
    table.add_row("loss", loss)
    if winner.rescored:
        splits = len(winner.trial.split_losses)
        table.add_row("search loss", f"{winner.search_loss:.4f} ({splits} splits)")
    return table


def print_score(score: Score, params: Mapping[str, Any], architecture: str, as_json: bool) -> None:
    """The result of `tuner evaluate` on stdout."""
    if as_json:
        print_json({**score.to_dict(), "params": dict(params), "architecture": architecture})
        return
    out = plain_console()
    out.print(f"params        {format_params(params)}")
    out.print(f"architecture  {architecture}")
    out.print(f"loss          {score.loss:.4f} ± {score.loss_std:.4f}")
    out.print(f"split losses  {', '.join(f'{x:.4f}' for x in score.split_losses)}")
    out.print(f"epochs        {', '.join(str(e) for e in score.epochs)}")
    out.print(f"seconds       {score.seconds:.1f}")


def print_error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _exact(value: Any) -> str:
    """A value in full precision, for CSV (true/false in lower case, empty for None)."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else repr(value).strip("'")


def _trial_row(trial: TrialRecord, names: Sequence[str], exact: bool = False) -> list[str]:
    def number(value: float | None, digits: int) -> str:
        return "" if value is None else (_exact(value) if exact else f"{value:.{digits}f}")

    shown = _exact if exact else format_value
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
        number(trial.loss, 4),
        number(trial.loss_std, 4),
        ",".join(str(e) for e in trial.epochs),
        number(trial.seconds, 1),
        f"{trial.error_kind}: {trial.error}" if trial.error_kind else "",
        *rescored,
    ]


def print_trials(results: StudyResults, fmt: str) -> None:
    """Every trial of a study on stdout: a table, CSV (every parameter) or one JSON object."""
    if fmt == "json":
        trials = [t.to_dict() for t in results.trials]
        print_json({"study": results.name, "storage": results.storage, "trials": trials})
        return
    every = dict.fromkeys(n for t in results.trials for n in t.params)
    names = list(results.names) if fmt == "table" else list(every)
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
    plain_console().print(table)


def print_best(results: StudyResults, architecture: str | None, as_json: bool) -> None:
    """The best trial of a study on stdout, with its decoded network when known."""
    winner = results.winner
    best = winner.trial
    if as_json:
        extra = {"architecture": architecture, "study": results.name, "storage": results.storage}
        print_json({**best.to_dict(), **winner.to_dict(), **extra})
        return
    table = _best_table(results.name, winner)
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
    plain_console().print(table)


def print_written(summary: Mapping[str, Any], lines: Sequence[str], as_json: bool) -> None:
    """What a command wrote: one JSON object, or a few `key  value` lines."""
    if as_json:
        print_json(summary)
        return
    out = plain_console()
    for line in lines:
        out.print(line)


def print_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()

"""Results on stdout (tables, JSON, CSV) and error lines on stderr; progress is `progress`'s."""

import csv
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from tuner.engine.loop import SearchResult
from tuner.study.records import stored_metrics
from tuner.study.results import StudyResults
from tuner.study.store import TrialRecord
from tuner.study.winner import Winner
from tuner.training.evaluate import Score
from tuner.training.metrics import CLASSIFICATION_METRICS, REGRESSION_METRICS

METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "roc_auc": "ROC AUC",
    "rmse": "RMSE",
    "mae": "MAE",
    "r2": "R²",
}
# The few metrics a narrow table shows; --json and CSV carry every one.
_MAIN_METRICS = {"classification": ("accuracy", "roc_auc"), "regression": ("r2",)}
# The baselines in the order shown under the winner: the stronger one first.
BASELINE_ORDER = ("linear", "prior")


def format_value(value: Any) -> str:
    """A hyperparameter value, short: 4 significant digits for reals."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_params(params: Mapping[str, Any], names: Sequence[str] | None = None) -> str:
    """`name=value` pairs, only `names` when given."""
    shown = names if names is not None else list(params)
    return " ".join(f"{n}={format_value(params[n])}" for n in shown if n in params)


def all_metrics(task: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS


def main_metrics(task: str) -> tuple[str, ...]:
    """The metrics a narrow table shows beside the loss."""
    return _MAIN_METRICS.get(task, ())


def format_metric(value: float | None) -> str:
    """A metric to 4 decimals; `n/a` where undefined (NaN), empty where not measured."""
    if value is None:
        return ""
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def winner_metrics(winner: Winner) -> tuple[str, dict[str, float]]:
    """Which score the winner's metrics come from and the metrics: the score its loss is
    reported from, else (stored before that score had metrics) the search-time ones."""
    trial, source = winner.trial, reported_source(winner)
    scores = {"confirmation": trial.confirm, "final": trial.final}
    score = scores.get(source)
    found = score.metrics if score is not None else trial.metrics
    return (source, found) if found else ("search", trial.metrics)


def reported_source(winner: Winner) -> str:
    """The score the winner's loss is reported from: confirmation, final or search."""
    if winner.confirmed:
        return "confirmation"
    return "final" if winner.rescored else "search"


def baselines_of(winner: Winner) -> dict[str, dict[str, Any]]:
    """The baselines stored with the winner (`training.baselines`); `{}` for older studies."""
    stored = winner.trial.attrs.get("baselines")
    if not isinstance(stored, Mapping):
        return {}
    return {
        key: dict(stored[key]) for key in BASELINE_ORDER if isinstance(stored.get(key), Mapping)
    }


def baseline_rows(winner: Winner, task: str) -> list[list[str]]:
    """Rows of model, loss ± se and the main metrics: the winner's network, then the baselines."""
    shown = main_metrics(task)
    _, found = winner_metrics(winner)
    network = [
        f"tuner's network (#{winner.trial.number})",
        f"{winner.loss:.4f} ± {winner.loss_se:.4f}",
    ]
    rows = [network + [format_metric(found.get(name)) for name in shown]]
    for baseline in baselines_of(winner).values():
        values = baseline.get("metrics") or {}
        loss = f"{baseline['loss']:.4f} ± {baseline.get('loss_se') or 0.0:.4f}"
        metrics = [format_metric(stored_metric(values, name)) for name in shown]
        rows.append([str(baseline.get("name", "")), loss, *metrics])
    return rows


def stored_metric(values: Mapping[str, Any], name: str) -> float | None:
    """A metric as stored in JSON: None when absent, NaN when stored as null (undefined)."""
    if name not in values:
        return None
    return math.nan if values[name] is None else float(values[name])


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
    out = plain_console()
    out.print(table)
    if baselines_of(result.winner):
        out.print(_baseline_table(result.winner, measured_task(result.winner)))


def measured_task(winner: Winner) -> str:
    """The task, from the metrics the winner's baselines measured (a search result carries no
    config)."""
    found = {name for b in baselines_of(winner).values() for name in b.get("metrics") or {}}
    return "regression" if "r2" in found else "classification"


def _best_table(study: str, winner: Winner) -> Table:
    """The winner's number, its reported loss and standard error, apart its search loss, and its
    metrics (marked where they are not of the score its loss is reported from)."""
    table = Table(title=f"best of study {study}", title_justify="left", show_header=False)
    table.add_column("key")
    table.add_column("value")
    table.add_row("trial", str(winner.trial.number))
    how = "fresh splits" if winner.fresh else "search-time splits; not re-scored"
    if winner.confirmed:  # the exported procedure's estimate
        how += f", the exported ensemble of {winner.members}" if winner.members > 1 else ""
    loss = f"{winner.loss:.4f} ± {winner.loss_se:.4f} ({winner.reported_splits} {how})"
    table.add_row("loss", loss)
    if winner.fresh:
        splits = len(winner.trial.split_losses)
        table.add_row("search loss", f"{winner.search_loss:.4f} ({splits} splits)")
    source, found = winner_metrics(winner)
    note = "" if source == reported_source(winner) else " (search-time)"
    for name, label in METRIC_LABELS.items():
        if name in found:
            table.add_row(label, format_metric(found[name]) + note)
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


def print_time_up(seconds: float) -> None:
    """On stderr: the time budget ended the search before its trial budget."""
    plain_console(stderr=True).print(
        f"time budget of {seconds:g} s (search.time_budget) ended the search before its trial "
        "budget. Continue with --resume"
    )


def print_error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def _exact(value: Any) -> str:
    """A value in full precision, for CSV (true/false in lower case, empty for None)."""
    if value is None:
        return ""
    return str(value).lower() if isinstance(value, bool) else repr(value).strip("'")


def _trial_row(
    trial: TrialRecord, names: Sequence[str], metrics: Sequence[str], exact: bool = False
) -> list[str]:
    def number(value: float | None, digits: int) -> str:
        return "" if value is None else (_exact(value) if exact else f"{value:.{digits}f}")

    def metric(name: str) -> str:
        value = trial.metrics.get(name)
        return _exact(value) if exact and value is not None else format_metric(value)

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
        *(metric(name) for name in metrics),
        ",".join(str(e) for e in trial.epochs),
        number(trial.seconds, 1),
        f"{trial.error_kind}: {trial.error}" if trial.error_kind else "",
        *rescored,
    ]


def print_trials(results: StudyResults, fmt: str, top: int | None = None) -> None:
    """A study's trials on stdout (with `top`, only the best `top` by search-time loss, best
    first): a table, CSV (every parameter and metric) or one JSON object."""
    trials = list(results.trials) if top is None else results.ranked()[:top]
    if fmt == "json":
        listed = [t.to_dict() for t in trials]
        print_json({"study": results.name, "storage": results.storage, "trials": listed})
        return
    task = results.config.data.task
    every = dict.fromkeys(n for t in trials for n in t.params)
    names = list(results.names) if fmt == "table" else list(every)
    metrics = main_metrics(task) if fmt == "table" else all_metrics(task)
    shown = [METRIC_LABELS[m] for m in metrics] if fmt == "table" else list(metrics)
    header = ["trial", "state", *names, "loss", "loss_std", *shown, "epochs", "seconds", "error"]
    if fmt == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([*header, "final_loss", "final_loss_se"])
        writer.writerows(_trial_row(t, names, metrics, exact=True) for t in trials)
        sys.stdout.flush()
        return
    title = f"trials of study {results.name}" + (f" (the best {top})" if top else "")
    table = Table(title=title, title_justify="left")
    for column in [*header, "final"]:
        table.add_column(column, justify="left" if column in {"state", "error"} else "right")
    for trial in trials:
        table.add_row(*_trial_row(trial, names, metrics))
    plain_console().print(table)


def print_best(results: StudyResults, architecture: str | None, as_json: bool) -> None:
    """The best trial of a study on stdout, with its metrics, its decoded network when known,
    and the baselines scored beside it."""
    winner = results.winner
    best = winner.trial
    task = results.config.data.task
    if as_json:
        extra = {"architecture": architecture, "study": results.name, "storage": results.storage}
        print_json({**best.to_dict(), **winner.to_dict(), **_metrics_json(winner), **extra})
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
    out = plain_console()
    out.print(table)
    if baselines_of(winner):
        out.print(_baseline_table(winner, task))


def _metrics_json(winner: Winner) -> dict[str, Any]:
    """`--json`'s metric keys: the winner's reported metrics (and which score they are from),
    its search-time ones, and the baselines (null for a study stored without them)."""
    source, found = winner_metrics(winner)
    return {
        "metrics": stored_metrics(found),
        "metrics_from": source,
        "search_metrics": stored_metrics(winner.trial.metrics),
        "baselines": baselines_of(winner) or None,
    }


def _baseline_table(winner: Winner, task: str) -> Table:
    """The winner beside the baselines on the same splits: loss and the main metrics."""
    table = Table(title="against baselines", title_justify="left")
    for column in ["model", "loss", *(METRIC_LABELS[m] for m in main_metrics(task))]:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in baseline_rows(winner, task):
        table.add_row(*row)
    return table


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

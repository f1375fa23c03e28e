"""The options and arguments the commands share, and the parsing of their values."""

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tuner.config.duration import parse_duration
from tuner.errors import UsageError

CONFIG = click.argument("config", type=click.Path(path_type=Path, dir_okay=True))
SET = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY.PATH=VALUE",
    help="Override a config key, e.g. --set evaluation.splits=5 (repeatable).",
)
JSON = click.option("--json", is_flag=True, help="Print the result as one JSON object.")
QUIET = click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")
DEBUG = click.option("--debug", is_flag=True, help="Show the traceback of an error.")
OBJECTIVE = click.option(
    "--objective",
    default="tuner.training.evaluate:make_objective",
    hidden=True,
    help="module:function that builds the objective from (config, dataset); for tests.",
)
WORKERS = click.option(
    "--workers", type=click.IntRange(min=1), help="Trials at once on this box [default: 1]."
)
GPUS = click.option(
    "--gpus", metavar="all|0,1,...", help="GPUs to use; each trial's process sees one."
)
PER_GPU = click.option(
    "--trials-per-gpu",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Trials at once on one GPU (with --gpus).",
)
EVENTS = click.option(
    "--events",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Also write each event of the search to FILE as one JSON object per line (appended "
    "to an existing file; each line flushed).",
)


STUDY_CONFIG = click.argument(
    "config", required=False, type=click.Path(path_type=Path, dir_okay=False)
)
STORAGE = click.option(
    "--storage", metavar="URL", help="SQLAlchemy URL of the study database [default: the config's]."
)
STUDY = click.option("--study", metavar="NAME", help="Study name [default: config name].")


def combined(*decorators: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """One decorator applying `decorators` in the order given (the first is the outermost)."""
    return lambda func: functools.reduce(lambda f, d: d(f), reversed(decorators), func)


def warm_overrides(url: str | None, study: str | None, own_study: str) -> list[str]:
    """`--warm-start URL [--warm-study NAME]` as search.warm_start overrides (JSON is YAML)."""
    values = {"storage": url, "study": study or (own_study if url else None)}
    return [f"search.warm_start.{k}={json.dumps(v)}" for k, v in values.items() if v is not None]


def budget_overrides(text: str | None) -> list[str]:
    """`--time-budget DURATION` as a search.time_budget override (none without it)."""
    if text is None:
        return []
    try:
        return [f"search.time_budget={parse_duration(text)}"]
    except ValueError as exc:
        raise UsageError(f"--time-budget: {exc}") from None


# What every command that runs trials takes: `tuner search` and `tuner worker`.
TRIAL_RUNNING = combined(WORKERS, GPUS, PER_GPU, EVENTS, OBJECTIVE, JSON, QUIET, DEBUG)

"""Bayesian hyperparameter search for Keras networks on tabular data: the public Python API,
which the `tuner` command wraps; heavy modules are imported inside the functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from tuner.errors import (
    ConfigError,
    DataError,
    SearchFailed,
    SearchInterrupted,
    StudyError,
    TunerError,
    UsageError,
)

if TYPE_CHECKING:
    from tuner.config.schema import Config
    from tuner.engine.loop import SearchResult
    from tuner.engine.reporter import Reporter
    from tuner.outputs.export import ExportedModel
    from tuner.study.results import StudyResults
    from tuner.training.evaluate import Score

__version__ = "0.1.0"
_Source: TypeAlias = "str | Path | Mapping[str, Any] | Config"  # a YAML file, a dict or a Config

__all__ = [
    "ConfigError",
    "DataError",
    "SearchFailed",
    "SearchInterrupted",
    "StudyError",
    "TunerError",
    "UsageError",
    "__version__",
    "evaluate",
    "load_config",
    "load_model",
    "open_study",
    "search",
]


def load_config(source: _Source, overrides: Sequence[str] = ()) -> Config:
    """A validated config from a YAML file, a dict (as the YAML would read) or a Config, with
    `--set`-style overrides (`"search.n_iter=5"`); ConfigError names the key and the fix."""
    from tuner.config.schema import Config, validate_config
    from tuner.config.schema import load_config as load_file
    from tuner.config.yamlfile import apply_overrides

    if isinstance(source, Config):
        source = source.to_dict()
    if isinstance(source, Mapping):
        return validate_config(apply_overrides(dict(source), overrides))
    return load_file(Path(source), overrides)


def search(
    config: _Source,
    *,
    out: str | Path | None = None,
    storage: str | None = None,
    study: str | None = None,
    resume: bool = False,
    reporter: Reporter | None = None,
    workers: int | None = None,
    gpus: str | None = None,
    trials_per_gpu: int = 1,
    objective: str | None = None,
) -> SearchResult:
    """Run a search, stored in `storage` (a URL) or `out`/study.db (runs/<config name>/, or
    runs/search/ for a dict) as `study`; `reporter` gets its events (none printed without one)."""
    from tuner.engine.api import Parallel
    from tuner.engine.api import search as run
    from tuner.engine.worker import DEFAULT_FACTORY
    from tuner.study.store import sqlite_url

    default = Path(config).stem if isinstance(config, str | Path) else "search"
    url = storage or sqlite_url(Path(out or Path("runs") / default) / "study.db")
    return run(
        load_config(config),
        storage_url=url,
        study_name=study or default,
        resume=resume,
        reporter=reporter,
        factory=objective or DEFAULT_FACTORY,
        parallel=Parallel(workers, gpus, trials_per_gpu),
    )


def evaluate(config: _Source, params: Mapping[str, Any], seed: int | None = None) -> Score:
    """Score one point by bootstrap, exactly as the search does (in a worker process)."""
    from tuner.engine.api import evaluate_config

    cfg = load_config(config)
    return evaluate_config(cfg, params, cfg.search.seed if seed is None else seed)[0]


def open_study(location: str | Path, study: str | None = None) -> StudyResults:
    """A study read back from a study.db, a run folder (its name the study's) or a URL."""
    from tuner.study.results import load_results
    from tuner.study.store import sqlite_url

    text = str(location)
    if "://" in text:
        if study is None:
            raise UsageError("open_study: give the study's name with a database URL")
        return load_results(text, study)
    path = Path(location)
    if path.is_dir():
        path = path / "study.db"
    if not path.is_file():
        raise UsageError(f"{path}: no study database here; give a study.db, a run folder or a URL")
    return load_results(sqlite_url(path), study or path.parent.name)


def load_model(folder: str | Path) -> ExportedModel:
    """A model folder written by `tuner export`; `.predict(frame)` predicts on a DataFrame."""
    from tuner.outputs.export import load_exported

    return load_exported(Path(folder))

"""Bayesian hyperparameter search for Keras networks on tabular data.

The public Python API; the `tuner` command is a thin layer over it. Heavy modules (pandas,
scikit-learn, Keras) are imported inside the functions, so `import tuner` is instant.

    import tuner
    result = tuner.search("configs/default.yaml")  # the study goes to runs/default/
    print(result.winner.describe(), result.best.params)
    study = tuner.open_study("runs/default")
    model = tuner.load_model("model/")
    predictions = model.predict(frame)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def load_config(
    source: str | Path | Mapping[str, Any] | Config, overrides: Sequence[str] = ()
) -> Config:
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
    config: str | Path | Mapping[str, Any] | Config,
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
    """Run a search: trials in worker processes, then the finalists' re-score.

    The study goes to `storage` (an SQLAlchemy URL) or to `out`/study.db (by default
    runs/<config name>/ for a file, runs/search/ for a dict), named `study` (default: the
    config file's name, or "search"). `reporter` gets the search's events (see
    `tuner.engine.reporter.Reporter`; nothing is printed without one).
    """
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


def evaluate(
    config: str | Path | Mapping[str, Any] | Config,
    params: Mapping[str, Any],
    seed: int | None = None,
) -> Score:
    """Score one point by bootstrap, exactly as the search does (in a worker process)."""
    from tuner.engine.api import evaluate_config

    cfg = load_config(config)
    return evaluate_config(cfg, params, cfg.search.seed if seed is None else seed)[0]


def open_study(location: str | Path, study: str | None = None) -> StudyResults:
    """A study's config, trials and winner, read back: `location` is a study.db file, a run
    folder holding one, or an SQLAlchemy URL (then `study` is required). The study's name
    defaults to the run folder's, as `tuner search` names it (runs/<name>/study.db)."""
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

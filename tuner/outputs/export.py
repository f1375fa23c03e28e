"""A deployable model, saved as a folder: the procedure whose loss the study reports, run on
all the data: `evaluation.splits` networks of the winning point, each trained as a trial trains
on a split of the rows, averaged in one Keras model (training/ensemble.py)."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.compose import ColumnTransformer

from tuner import __version__
from tuner.errors import DataError, TrialFailed, TunerError, UsageError
from tuner.study.results import StudyResults
from tuner.training.architecture import Architecture
from tuner.training.data import Dataset, load_dataset, read_table

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.joblib"
META_FILE = "model.json"


@dataclass(frozen=True)
class ExportedModel:
    """A model ready to predict: network, fitted preprocessing and its description."""

    model: keras.Model
    preprocessor: ColumnTransformer
    meta: dict[str, Any]

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities and the predicted class (or the predicted value) per row."""
        return predict_frame(self, frame)


def check_model_folder(out: Path, force: bool) -> None:
    """Refuse a file, or a non-empty folder without `force`: nothing is overwritten unasked."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {out} is a file; give a folder for the model")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"--out: {out} exists and is not empty; choose another folder or add --force"
        )


def file_checksum(path: str) -> str | None:
    """sha256 of a local data file (None for a URL)."""
    if path.startswith(("http://", "https://")):
        return None
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _versions() -> dict[str, str]:
    """What made the model: Python, Keras and the backend it ran on (TensorFlow, JAX or
    PyTorch, whichever KERAS_BACKEND chose; a JAX-only GPU box has no TensorFlow)."""
    import importlib.metadata

    import keras

    backend = keras.backend.backend()
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": backend,
        backend: importlib.metadata.version(backend),
        "scikit-learn": sklearn.__version__,
        "tuner": __version__,
    }


def _id_column(frame: pd.DataFrame, dropped: list[str]) -> str | None:
    """The input's id: a dropped column named like `id`, else the first unique dropped one."""
    present = [c for c in dropped if c in frame.columns]
    for column in present:
        if column.lower() in {"id", "key", "row_id", "index"}:
            return column
    return next((c for c in present if frame[c].is_unique), None)


def _score(results: StudyResults, task: str) -> dict[str, Any]:
    """The estimate the study reports for what is exported, and the search-time loss apart."""
    found, best = results.winner, results.best
    reported = best.confirm if found.confirmed else best.final if found.rescored else None
    return {
        "loss": found.loss,
        "loss_se": found.loss_se,
        "loss_std": found.loss_std,
        "splits": found.reported_splits,
        "members": found.members,
        "estimate": found.describe(),
        "search_loss": best.loss,
        "search_loss_std": best.loss_std,
        "metric": "log_loss" if task == "classification" else "rmse",
        "metrics": dict(reported.metrics if reported is not None else best.metrics),
    }


def _metadata(results: StudyResults, dataset: Dataset, arch: Architecture, members: int) -> dict:
    best, data = results.best, results.config.data
    return {
        "study": results.name,
        "storage": results.storage,
        "trial": best.number,
        "params": best.params,
        "task": dataset.task,
        "target": data.target,
        "classes": list(dataset.classes),
        "feature_columns": list(dataset.features.columns),
        "numeric": list(dataset.numeric),
        "categorical": list(dataset.categorical),
        "architecture": {
            "description": arch.describe(),
            "n_inputs": arch.n_inputs,
            "hidden": list(arch.hidden),
            "n_outputs": arch.n_outputs,
            "activation": arch.activation,
            "dropout": arch.dropout,
            "batch_norm": arch.batch_norm,
            "l2": arch.l2,
            "n_params": arch.n_params,
            "members": members,
        },
        "score": _score(results, dataset.task),
        "data": {"path": data.path, "sha256": file_checksum(data.path), "rows": len(dataset)},
        "versions": _versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_model(results: StudyResults, out: Path, force: bool = False) -> ExportedModel:
    """Train the winner's `evaluation.splits` networks on all the rows (each on a split of
    them, early-stopped on its held-out part, as a trial trains) and write the folder of the
    model that averages them; returns it."""
    check_model_folder(out, force)
    started = time.perf_counter()
    best, config = results.best, results.config
    dataset = load_dataset(config.data)
    members = config.evaluation.splits
    from tuner.training.ensemble import averaged_model, train_members  # Keras, when exporting

    try:
        preprocessor, replicas = train_members(config, dataset, best.params, best.seed, members)
    except TrialFailed as exc:
        raise TunerError(
            f"trial {best.number}'s networks failed on all the rows ({exc}); nothing was written"
        ) from exc
    model = averaged_model(replicas, members)
    meta = _metadata(results, dataset, replicas.arch, members)
    meta["id_column"] = _id_column(read_table(config.data.path), config.data.drop)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / MODEL_FILE)
    joblib.dump(preprocessor, out / PREPROCESSING_FILE)
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    summary = {**meta, "folder": str(out), "seconds": time.perf_counter() - started}
    return ExportedModel(model, preprocessor, summary)


def read_meta(folder: Path) -> dict[str, Any]:
    """model.json of a model folder; UsageError naming what is missing."""
    if not folder.is_dir():
        raise UsageError(f"{folder}: model folder not found; write one with `tuner export --out`")
    for name in (META_FILE, MODEL_FILE, PREPROCESSING_FILE):
        if not (folder / name).is_file():
            raise UsageError(f"{folder}: no {name}; this is not a folder written by `tuner export`")
    try:
        return dict(json.loads((folder / META_FILE).read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{folder / META_FILE}: not valid JSON ({exc})") from exc


def load_exported(folder: Path) -> ExportedModel:
    """Read a model folder that `export_model` wrote."""
    import keras

    meta = read_meta(folder)
    model = keras.saving.load_model(folder / MODEL_FILE)
    return ExportedModel(model, joblib.load(folder / PREPROCESSING_FILE), meta)


def _features(meta: Mapping[str, Any], frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """The model's feature columns, typed as in training; UsageError listing missing ones."""
    missing = [c for c in meta["feature_columns"] if c not in frame.columns]
    if missing:
        raise UsageError(
            f"{source}: missing column(s) {', '.join(missing)} that the model needs; "
            f"it was trained on {', '.join(meta['feature_columns'])}"
        )
    features = frame[meta["feature_columns"]].copy()
    for column in meta["categorical"]:
        values = features[column].astype("object")
        features[column] = values.where(values.isna(), values.astype(str))
    for column in meta["numeric"]:
        try:
            features[column] = pd.to_numeric(features[column])
        except (ValueError, TypeError) as exc:
            raise UsageError(f"{source}: column '{column}' must be numeric ({exc})") from exc
    return features


def predict_frame(
    exported: ExportedModel, frame: pd.DataFrame, source: str = "data", id_column: str | None = None
) -> pd.DataFrame:
    """Class probabilities and the predicted class (or the predicted value), id column first."""
    meta = exported.meta
    x = np.asarray(exported.preprocessor.transform(_features(meta, frame, source)), "float32")
    raw = np.asarray(exported.model.predict(x, verbose=0), dtype="float64")
    out = pd.DataFrame(index=frame.index)
    column = id_column or meta.get("id_column")
    if id_column is not None and id_column not in frame.columns:
        raise UsageError(f"--id: column '{id_column}' is not in {source}")
    if column is not None and column in frame.columns:
        out[column] = frame[column]
    if meta["task"] == "classification":
        classes = meta["classes"]
        for index, name in enumerate(classes):
            out[f"p_{name}"] = raw[:, index]
        out["prediction"] = [classes[i] for i in raw.argmax(axis=1)]
    else:
        out["prediction"] = raw.reshape(-1)
    return out


def predict_file(folder: Path, data: Path, out: Path, id_column: str | None = None) -> dict:
    """`tuner predict`: read a CSV, predict, write the predictions CSV; returns a summary."""
    meta = read_meta(folder)
    try:
        frame = read_table(str(data))
    except DataError as exc:
        raise DataError(str(exc).removeprefix("data.path: ")) from exc
    _features(meta, frame, str(data))  # refuse missing columns before loading Keras
    if out.is_dir():
        raise UsageError(f"--out: {out} is a folder; give the path of a CSV file")
    exported = load_exported(folder)
    predictions = predict_frame(exported, frame, str(data), id_column)
    out.parent.mkdir(parents=True, exist_ok=True)
    predictions.to_csv(out, index=False)
    return {"rows": len(predictions), "columns": list(predictions.columns), "out": str(out)}

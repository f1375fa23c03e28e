"""Loading a tabular data set, splitting it, and the preprocessing pipeline. No Keras here."""

import csv
import math
import urllib.error
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tuner.config.schema import DataConfig
from tuner.errors import DataError

Task = str


@dataclass(frozen=True)
class Dataset:
    """Features, encoded target and column roles of one data set."""

    features: pd.DataFrame
    target: np.ndarray
    task: Task
    classes: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    dropped_rows: int = 0

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else 1

    def __len__(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class PreparedSplit:
    """One bootstrap split, preprocessed with a pipeline fitted on its training part only."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True)
class TargetScale:
    """How a regression target trains: standardised, `(y - mean) / std`, on its training part."""

    mean: float = 0.0
    std: float = 1.0

    @property
    def identity(self) -> bool:
        return self.mean == 0.0 and self.std == 1.0

    def forward(self, y: np.ndarray) -> np.ndarray:
        """The standardised target (class codes and unscaled targets as they are)."""
        return y if self.identity else ((y - self.mean) / self.std).astype("float32")

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Values the network predicts, back in the target's units."""
        return values if self.identity else values * self.std + self.mean

    def apply(self, split: PreparedSplit) -> PreparedSplit:
        """The split with both parts' targets standardised by this (training part's) scale."""
        if self.identity:
            return split
        y_train, y_test = self.forward(split.y_train), self.forward(split.y_test)
        return PreparedSplit(split.x_train, y_train, split.x_test, y_test)


def target_scale(task: Task, y_train: np.ndarray) -> TargetScale:
    """The scale of a training part's target: its mean and standard deviation (0 counts as 1),
    so that learning rates and `min_delta` mean the same whatever the target's units."""
    if task != "regression":
        return TargetScale()
    values = y_train.astype("float64")
    std = float(np.std(values))
    return TargetScale(float(np.mean(values)), std if std > 0 else 1.0)


def read_table(source: str) -> pd.DataFrame:
    """Read a CSV from a path or an http(s) URL, with one-line errors naming the file."""
    empty = f"data.path: {source} is empty; it needs a header row and data rows"
    if not source.startswith(("http://", "https://")):
        path = Path(source)
        if not path.exists():
            raise DataError(f"data.path: file not found: {source}; check the path")
        if path.is_dir():
            raise DataError(f"data.path: {source} is a directory; give the path of a CSV file")
        head = path.read_bytes()[:4096]
        if b"\x00" in head:
            raise DataError(
                f"data.path: {source} is a binary file, not a CSV; export the data as CSV text"
            )
        if not head.strip():
            raise DataError(empty)
        _refuse_other_formats(source, head)
        _refuse_duplicate_header(source, head)
    try:
        frame = pd.read_csv(source, encoding="utf-8", skipinitialspace=True)
    except UnicodeDecodeError as exc:
        raise DataError(f"data.path: {source} is not UTF-8 text; save it as UTF-8") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(empty) from exc
    except (pd.errors.ParserError, csv.Error) as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(
            f"data.path: {source} is not a valid CSV ({detail}); fix the line it names"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"data.path: cannot read {source} ({exc}); check the path or URL") from exc
    if frame.empty:
        raise DataError(f"data.path: {source} has a header but no data rows; add data rows")
    return frame


def _refuse_other_formats(source: str, head: bytes) -> None:
    """JSON, XML and HTML files would parse as odd one-column CSVs; name them instead."""
    first = head.lstrip()[:1]
    kind = {b"{": "JSON", b"[": "JSON", b"<": "XML or HTML"}.get(first)
    if kind:
        raise DataError(
            f"data.path: {source} looks like {kind}, not CSV; export it as a CSV file "
            "with a header row"
        )


def _refuse_duplicate_header(source: str, head: bytes) -> None:
    """pandas renames a repeated column `x` to `x.1` silently; a repeated name is a mistake."""
    if b"\n" not in head:
        return  # a header longer than the sniffed bytes: pandas' renaming stands
    line = head.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    names = [n.strip() for n in next(csv.reader([line], skipinitialspace=True), [])]
    repeated = [name for i, name in enumerate(names) if name and name in names[:i]]
    if repeated:
        raise DataError(
            f"data.path: {source} names the column {repeated[0]!r} twice in its header; "
            "rename one of them"
        )


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load the data set that a config's data section describes."""
    frame = read_table(cfg.path)
    _check_columns(list(frame.columns), cfg)
    missing_target = frame[cfg.target].isna()
    frame = frame.loc[~missing_target].reset_index(drop=True)
    if frame.empty:
        raise DataError(
            f"data.target: column {cfg.target!r} has no values; fill it in or choose another "
            "target column"
        )
    features = frame.drop(columns=[cfg.target, *cfg.drop])
    if features.shape[1] == 0:
        raise DataError("data.drop: no feature columns are left; drop fewer columns")
    for column in features.columns:
        if features[column].isna().all():
            raise DataError(f"data: column {column!r} has no values; add it to data.drop")
    categorical = _categorical_columns(features, cfg.categorical)
    numeric = tuple(c for c in features.columns if c not in categorical)
    for column in numeric:
        _refuse_infinite(features[column], f"data: column {column!r}")
    for column in categorical:
        # As text, so that a column mixing numbers and words still encodes.
        values = features[column].astype("object")
        features[column] = values.where(values.isna(), values.astype(str))
    target, classes = _encode_target(frame[cfg.target], cfg.task, cfg.target)
    dropped = int(missing_target.sum())
    return Dataset(features, target, cfg.task, classes, numeric, categorical, dropped)


def _check_columns(columns: list[str], cfg: DataConfig) -> None:
    """Every column the config names is in the data; the target is not dropped."""
    if len(columns) == 1 and cfg.target not in columns:
        raise DataError(
            f"data.path: {cfg.path} has a single column ({columns[0]!r}), so it is not "
            "comma-separated; save it as a CSV with commas between the columns"
        )
    _require_columns(columns, [cfg.target], "data.target")
    _require_columns(columns, cfg.drop, "data.drop")
    if cfg.categorical is not None:
        _require_columns(columns, cfg.categorical, "data.categorical")
    if cfg.target in cfg.drop:
        raise DataError(f"data.drop: lists the target column {cfg.target!r}; remove it from drop")


def _require_columns(columns: list[str], wanted: list[str], key: str) -> None:
    missing = [name for name in wanted if name not in columns]
    if missing:  # names as written, or quoted where they hold a line break or other control
        names = [str(c) if str(c).isprintable() else repr(str(c)) for c in columns[:20]]
        shown = ", ".join(names) + (", ..." if columns[20:] else "")
        raise DataError(f"{key}: column {missing[0]!r} is not in the data; columns: {shown}")


def _refuse_infinite(column: pd.Series, where: str) -> None:
    """Infinite numbers (`inf`, or beyond 1.8e308) cannot be scaled or learned from."""
    values = pd.to_numeric(column, errors="coerce").astype("float64")
    infinite = np.isinf(values)
    if infinite.any():
        first = values[infinite].iloc[0]
        raise DataError(
            f"{where} has {int(infinite.sum())} infinite value(s) (got {first}); "
            "replace them with finite numbers or leave them empty"
        )


def _refuse_mixed_column(column: pd.Series, name: str) -> None:
    """A column of mostly numbers with a few words is a typo, not a category: say which value."""
    values = column.dropna()
    numbers = pd.to_numeric(values.astype(str), errors="coerce")
    words = values[numbers.isna()]
    if len(words) and len(words) < len(values) / 2:
        raise DataError(
            f"data: column {name!r} holds numbers but also {len(words)} non-numeric value(s) "
            f"(got {str(words.iloc[0])!r}); fix or empty the value(s), or list {name!r} in "
            "data.categorical"
        )


def _categorical_columns(features: pd.DataFrame, given: list[str] | None) -> tuple[str, ...]:
    for column in features.columns:
        if not pd.api.types.is_numeric_dtype(features[column]) and column not in (given or []):
            _refuse_mixed_column(features[column], column)
    if given is not None:
        for column in features.columns:
            if column not in given and not pd.api.types.is_numeric_dtype(features[column]):
                raise DataError(
                    f"data.categorical: column {column!r} is not numeric; "
                    "add it to data.categorical or data.drop"
                )
        return tuple(given)
    return tuple(c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c]))


def _encode_target(column: pd.Series, task: Task, name: str) -> tuple[np.ndarray, tuple[str, ...]]:
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(column):
            raise DataError(
                f"data.target: column {name!r} is not numeric; use task: classification"
            )
        _refuse_infinite(column, f"data.target: column {name!r}")
        return column.to_numpy(dtype="float32"), ()
    labels = column.astype(str)
    classes = tuple(sorted(labels.unique()))
    if len(classes) < 2:
        raise DataError(
            f"data.target: column {name!r} has a single class ({classes[0]!r}); "
            "classification needs at least two; choose another target or use task: regression"
        )
    codes = pd.Categorical(labels, categories=list(classes)).codes
    return codes.astype("int64"), classes


def make_splits(
    dataset: Dataset, n_splits: int, test_size: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffle splits (stratified for classification) of row indices: (train, held out)."""
    if dataset.task == "classification":
        counts = np.bincount(dataset.target, minlength=len(dataset.classes))
        rare = [dataset.classes[i] for i, n in enumerate(counts) if n < 2]
        if rare:
            raise DataError(
                f"data.target: class {rare[0]!r} has fewer than 2 rows, so stratified splits "
                "are impossible; remove its rows or merge it with another class"
            )
        _check_split_sizes(len(dataset), len(dataset.classes), test_size)
    stratified = dataset.task == "classification"
    kind = StratifiedShuffleSplit if stratified else ShuffleSplit
    splitter = kind(n_splits=n_splits, test_size=test_size, random_state=seed)
    try:
        return list(splitter.split(dataset.features, dataset.target))
    except ValueError as exc:
        raise DataError(f"evaluation.test_size: {exc}; change test_size") from exc


def _check_split_sizes(rows: int, classes: int, test_size: float) -> None:
    """Both parts of a stratified split need a row of every class."""
    held_out = math.ceil(test_size * rows)
    if held_out < classes:
        least = math.ceil(classes / rows * 1000) / 1000
        raise DataError(
            f"evaluation.test_size: holds out {held_out} of {rows} rows, fewer than the "
            f"{classes} classes (got {test_size}); raise test_size to at least {least:g}"
        )
    if rows - held_out < classes:
        most = math.floor((rows - classes) / rows * 1000) / 1000
        raise DataError(
            f"evaluation.test_size: leaves {rows - held_out} of {rows} rows to train on, fewer "
            f"than the {classes} classes (got {test_size}); lower test_size to at most {most:g}"
        )


def make_preprocessor(dataset: Dataset) -> ColumnTransformer:
    """Median-fill and standardise numbers; most-frequent-fill and one-hot categories."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    frequent = SimpleImputer(strategy="most_frequent")
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    categorical = Pipeline([("impute", frequent), ("onehot", onehot)])
    parts = [("numeric", numeric, list(dataset.numeric))]
    parts += [("categorical", categorical, list(dataset.categorical))]
    return ColumnTransformer(parts, sparse_threshold=0.0)


def prepare_split(dataset: Dataset, train: np.ndarray, test: np.ndarray) -> PreparedSplit:
    """Fit the preprocessing on the training rows only, then transform both parts."""
    pipeline = make_preprocessor(dataset)
    x_train = np.asarray(pipeline.fit_transform(dataset.features.iloc[train]), dtype="float32")
    x_test = np.asarray(pipeline.transform(dataset.features.iloc[test]), dtype="float32")
    return PreparedSplit(x_train, dataset.target[train], x_test, dataset.target[test])

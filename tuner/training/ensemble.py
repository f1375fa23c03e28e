"""The exported procedure and its estimate: `members` networks of a point, each trained as a
trial trains on a split of the rows and early-stopped on its held-out part, their predictions
averaged (probabilities for classification, values for regression).

`train_members` runs the procedure on a whole data set (what `tuner export` saves);
`evaluate_ensemble` runs it on the training part of fresh outer splits and scores the averaged
predictions on each held-out part, so its mean is the expected loss of what is exported."""

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import keras
import numpy as np
from sklearn.compose import ColumnTransformer

from tuner.config.schema import Config, Scalar
from tuner.errors import TrialFailed
from tuner.training.architecture import decode
from tuner.training.data import Dataset, PreparedSplit, make_preprocessor, make_splits
from tuner.training.evaluate import Score
from tuner.training.metrics import mean_metrics, metrics
from tuner.training.model import Replicas, held_out_loss
from tuner.training.trainer import fit_replicas


@dataclass(frozen=True)
class _Outer:
    """One outer split: the procedure's member splits of its training part (preprocessed with
    a pipeline fitted on that part), and its held-out part, preprocessed the same way."""

    members: list[PreparedSplit]
    x_test: np.ndarray
    y_test: np.ndarray


def member_splits(
    dataset: Dataset, x: np.ndarray, members: int, test_size: float, seed: int
) -> list[PreparedSplit]:
    """The procedure's `members` splits of `dataset`'s rows (`x`: their preprocessed features),
    drawn as a trial draws its splits."""
    y = dataset.target
    return [
        PreparedSplit(x[train], y[train], x[test], y[test])
        for train, test in make_splits(dataset, members, test_size, seed)
    ]


def fitted_features(dataset: Dataset) -> tuple[ColumnTransformer, np.ndarray]:
    """The preprocessing fitted on all of `dataset`'s rows, and those rows transformed."""
    preprocessor = make_preprocessor(dataset)
    x = np.asarray(preprocessor.fit_transform(dataset.features), dtype="float32")
    return preprocessor, x


def train_members(
    config: Config, dataset: Dataset, params: Mapping[str, Scalar], seed: int, members: int
) -> tuple[ColumnTransformer, Replicas]:
    """The procedure on all of `dataset`: its preprocessing and `members` trained networks."""
    preprocessor, x = fitted_features(dataset)
    arch = decode(params, config.network, x.shape[1], dataset.n_outputs, dataset.task)
    splits = member_splits(dataset, x, members, config.evaluation.test_size, seed)
    return preprocessor, fit_replicas(arch, dict(params), splits, config.evaluation, seed)


def averaged_model(replicas: Replicas, count: int) -> keras.Model:
    """One Keras model whose output is the mean of the first `count` replicas' outputs."""
    models = [replicas.keras_model(i) for i in range(count)]
    if count == 1:
        return models[0]
    inputs = keras.Input(shape=(replicas.arch.n_inputs,))
    averaged = keras.layers.Average()([model(inputs) for model in models])
    return keras.Model(inputs, averaged)


def subset(dataset: Dataset, rows: np.ndarray) -> Dataset:
    """The data set of `rows` alone (its column roles and classes kept)."""
    return replace(dataset, features=dataset.features.iloc[rows], target=dataset.target[rows])


def _outer(
    dataset: Dataset, rows: tuple[np.ndarray, np.ndarray], members: int, test_size: float, seed: int
) -> _Outer:
    """The procedure's data on one outer split: everything fitted on its training part only."""
    train, test = rows
    inner = subset(dataset, train)
    preprocessor, x = fitted_features(inner)
    x_test = np.asarray(preprocessor.transform(dataset.features.iloc[test]), dtype="float32")
    splits = member_splits(inner, x, members, test_size, seed)
    return _Outer(splits, x_test, dataset.target[test])


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    """Zero columns on the right, as the stacked trainer pads a narrower split."""
    return np.pad(x, ((0, 0), (0, width - x.shape[1])))


def _averaged(replicas: Replicas, outers: Sequence[_Outer], members: int) -> np.ndarray:
    """Each outer split's members' predictions on its held-out part, averaged: (outer, rows,
    outputs)."""
    width = replicas.arch.n_inputs
    x = np.stack([_pad(o.x_test, width) for o in outers for _ in range(members)])
    predictions = np.asarray(replicas.predict(x), dtype="float64")
    if not np.all(np.isfinite(predictions)):
        raise TrialFailed("diverged", "the network predicts NaN or infinite values")
    return predictions.reshape(len(outers), members, *predictions.shape[1:]).mean(axis=1)


def _scored(
    dataset: Dataset, replicas: Replicas, outers: Sequence[_Outer], members: int
) -> tuple[list[float], dict[str, float]]:
    """Each outer split's loss of its averaged predictions, and each metric's mean over the
    outer splits where it is defined, as a trial's are."""
    averaged = _averaged(replicas, outers, members)
    pairs = list(zip(outers, averaged, strict=True))
    losses = [held_out_loss(replicas.arch, o.y_test, p) for o, p in pairs]
    found = [metrics(dataset.task, o.y_test, p, dataset.n_outputs) for o, p in pairs]
    return losses, mean_metrics(found)


def evaluate_ensemble(
    config: Config, dataset: Dataset, params: Mapping[str, Scalar], seed: int, members: int
) -> Score:
    """The procedure's loss on `evaluation.splits` outer splits drawn from `seed`: on outer
    split o, the procedure runs on the training part with seed `seed + o * members` (as
    `train_members` would on those rows) and its averaged predictions are scored on the
    held-out part. All the networks train in one stacked call."""
    started = time.perf_counter()
    evaluation = config.evaluation
    rows = make_splits(dataset, evaluation.splits, evaluation.test_size, seed)
    outers = [
        _outer(dataset, split, members, evaluation.test_size, seed + index * members)
        for index, split in enumerate(rows)
    ]
    width = max(o.x_test.shape[1] for o in outers)
    arch = decode(params, config.network, width, dataset.n_outputs, dataset.task)
    splits = [split for o in outers for split in o.members]
    replicas = fit_replicas(arch, dict(params), splits, evaluation, seed)
    losses, means = _scored(dataset, replicas, outers, members)
    loss = float(np.mean(losses))
    if not math.isfinite(loss):
        raise TrialFailed("diverged", f"held-out loss is {loss}")
    std = float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0
    # An outer split's networks train together: it takes as long as its slowest one.
    epochs = np.reshape(replicas.epochs, (len(outers), members)).max(axis=1)
    seconds = time.perf_counter() - started
    return Score(loss, std, tuple(losses), tuple(int(e) for e in epochs), seconds, metrics=means)

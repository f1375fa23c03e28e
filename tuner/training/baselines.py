"""Baselines for a winner's loss, on exactly the confirmation's splits: the training part's class
frequencies (or mean), and a linear model on the same preprocessed features. Seconds, no Keras:
a network that does no better than these has learnt nothing worth its training."""

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import log_loss

from tuner.config.schema import Config
from tuner.training.data import Dataset, PreparedSplit, make_splits, prepare_split
from tuner.training.metrics import mean_metrics, metrics

# Predictions of a baseline fitted on a split's training part, for its held-out part:
# probabilities (rows, n_classes) or values in target units.
Predictor = Callable[[PreparedSplit, int], np.ndarray]

# The smallest probability a baseline scores with: a class it never saw costs a large but
# finite log loss, as a network's softmax never reaches 0 either.
_FLOOR = 1e-15

_NAMES = {
    "classification": {"prior": "class frequencies", "linear": "logistic regression"},
    "regression": {"prior": "the mean", "linear": "ridge regression"},
}


def score_baselines(
    config: Config, dataset: Dataset, seeds: Sequence[int], sizes: Sequence[int]
) -> dict[str, dict[str, Any]]:
    """The baselines' loss, its standard error, splits and mean metrics on the splits the
    confirmation draws (`sizes[i]` splits from `seeds[i]`); JSON-ready, `{}` without splits."""
    test_size = config.evaluation.test_size
    chunks = zip(seeds, sizes, strict=True)
    splits = [pair for seed, size in chunks for pair in make_splits(dataset, size, test_size, seed)]
    if not splits:
        return {}
    parts = [prepare_split(dataset, train, test) for train, test in splits]
    classify = dataset.task == "classification"
    predictors: dict[str, Predictor] = {
        "prior": _frequencies if classify else _mean,
        "linear": _logistic if classify else _ridge,
    }
    names = _NAMES["classification" if classify else "regression"]
    return {key: _score(names[key], predict, parts, dataset) for key, predict in predictors.items()}


def _score(
    name: str, predict: Predictor, parts: Sequence[PreparedSplit], dataset: Dataset
) -> dict[str, Any]:
    """One baseline over every split: mean loss, its standard error, and mean metrics."""
    task, n_classes = dataset.task, dataset.n_outputs
    losses, per_split = [], []
    for part in parts:
        predictions = predict(part, n_classes)
        losses.append(baseline_loss(task, part.y_test, predictions, n_classes))
        per_split.append(metrics(task, part.y_test, predictions, n_classes))
    # ddof=1 and se = std / sqrt(splits), as a trial's loss and its FinalScore's
    std = float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0
    return {
        "name": name,
        "loss": float(np.mean(losses)),
        "loss_se": std / math.sqrt(len(losses)),
        "splits": len(losses),
        "metrics": _json_ready(mean_metrics(per_split)),
    }


def baseline_loss(task: str, y_true: np.ndarray, predictions: np.ndarray, n_classes: int) -> float:
    """The loss a network is scored with (`model.held_out_loss`): log loss over every class,
    probabilities clipped away from 0, or RMSE in the target's units."""
    if task == "classification":
        probs = np.clip(predictions.astype("float64"), _FLOOR, None)
        probs /= probs.sum(axis=1, keepdims=True)
        return float(log_loss(y_true, probs, labels=list(range(n_classes))))
    error = predictions.reshape(-1).astype("float64") - y_true.astype("float64")
    return float(np.sqrt(np.mean(error**2)))


def _frequencies(part: PreparedSplit, n_classes: int) -> np.ndarray:
    """Every held-out row given the training part's class frequencies."""
    counts = np.bincount(part.y_train.astype("int64"), minlength=n_classes)
    return np.tile(counts / counts.sum(), (len(part.y_test), 1))


def _mean(part: PreparedSplit, n_classes: int) -> np.ndarray:
    """Every held-out row given the training part's mean."""
    return np.full(len(part.y_test), float(np.mean(part.y_train.astype("float64"))))


def _logistic(part: PreparedSplit, n_classes: int) -> np.ndarray:
    """Scikit-learn's (multinomial, L2) logistic regression's probabilities for every class."""
    model = LogisticRegression(max_iter=1000)
    with warnings.catch_warnings():
        # a baseline short of convergence is still a fair, if slightly weak, baseline
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(part.x_train, part.y_train)
    probs = np.zeros((len(part.y_test), n_classes))
    probs[:, model.classes_.astype("int64")] = model.predict_proba(part.x_test)
    return probs


def _ridge(part: PreparedSplit, n_classes: int) -> np.ndarray:
    """Scikit-learn's ridge regression's values, in the target's units."""
    model = Ridge()
    model.fit(part.x_train, part.y_train.astype("float64"))
    return np.asarray(model.predict(part.x_test))


def _json_ready(values: Mapping[str, float]) -> dict[str, float | None]:
    """Undefined metrics as None: JSON has no NaN (and PostgreSQL's JSON refuses one)."""
    return {name: value if math.isfinite(value) else None for name, value in values.items()}

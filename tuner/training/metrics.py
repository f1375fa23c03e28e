"""Metrics reported beside the loss: accuracy, balanced accuracy and ROC AUC (classification),
RMSE, MAE and R² (regression), all scikit-learn's. Pure NumPy and scikit-learn, no Keras."""

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "roc_auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")


def metrics(
    task: str, y_true: np.ndarray, predictions: np.ndarray, n_classes: int
) -> dict[str, float]:
    """The task's metrics of `predictions`: probabilities (rows, n_classes) against class codes
    (classification), or values in target units (rows,) or (rows, 1) (regression)."""
    if task == "classification":
        return classification_metrics(np.asarray(y_true), np.asarray(predictions), n_classes)
    return regression_metrics(np.asarray(y_true), np.asarray(predictions))


def classification_metrics(
    y_true: np.ndarray, probabilities: np.ndarray, n_classes: int
) -> dict[str, float]:
    """Accuracy and balanced accuracy of the most probable class, and ROC AUC."""
    codes = y_true.astype("int64").reshape(-1)
    chosen = np.argmax(probabilities, axis=1)
    with warnings.catch_warnings():
        # balanced accuracy warns when a predicted class is absent from y_true; still defined
        warnings.simplefilter("ignore", UserWarning)
        balanced = balanced_accuracy_score(codes, chosen)
    return {
        "accuracy": float(accuracy_score(codes, chosen)),
        "balanced_accuracy": float(balanced),
        "roc_auc": roc_auc(codes, probabilities, n_classes),
    }


def roc_auc(codes: np.ndarray, probabilities: np.ndarray, n_classes: int) -> float:
    """ROC AUC: of the positive class's probability (two classes), else one-vs-rest macro;
    NaN where undefined (a class absent from `codes`)."""
    # float32 softmax rows miss sklearn's sum-to-one tolerance; renormalise in float64
    probs = probabilities.astype("float64")
    probs /= probs.sum(axis=1, keepdims=True)
    if len(np.unique(codes)) < n_classes:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        try:
            if n_classes == 2:
                value = roc_auc_score(codes, probs[:, 1])
            else:
                value = roc_auc_score(
                    codes, probs, multi_class="ovr", average="macro", labels=list(range(n_classes))
                )
        except ValueError:
            return math.nan
    return float(value)


def regression_metrics(y_true: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² in target units."""
    truth = y_true.astype("float64").reshape(-1)
    predicted = values.astype("float64").reshape(-1)
    return {
        "rmse": float(root_mean_squared_error(truth, predicted)),
        "mae": float(mean_absolute_error(truth, predicted)),
        "r2": float(r2_score(truth, predicted)) if len(truth) > 1 else math.nan,
    }


def mean_metrics(
    per_split: Sequence[Mapping[str, float]], weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Each metric's mean over the splits where it is defined (an AUC is not on a part that
    lacks a class), weighted by `weights` when given; NaN where it is defined on none."""
    weights = [1.0] * len(per_split) if weights is None else list(weights)
    means = {}
    for name in dict.fromkeys(name for split in per_split for name in split):
        pairs = [
            (w, split.get(name, math.nan)) for w, split in zip(weights, per_split, strict=True)
        ]
        defined = [(w, value) for w, value in pairs if math.isfinite(value)]
        total = sum(w for w, _ in defined)
        means[name] = float(sum(w * value for w, value in defined) / total) if total else math.nan
    return means

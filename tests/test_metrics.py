"""The metrics beside the loss agree with scikit-learn's functions on the same predictions."""

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

from tuner.training.metrics import metrics


def _probabilities(rows: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """Softmax rows in float32, as a network predicts them."""
    logits = np.random.default_rng(seed).normal(size=(rows, n_classes))
    exp = np.exp(logits)
    return (exp / exp.sum(axis=1, keepdims=True)).astype("float32")


def _codes(rows: int, n_classes: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_classes, rows)


def test_accuracy_is_sklearns_on_the_most_probable_class():
    y, probs = _codes(60, 3), _probabilities(60, 3)
    got = metrics("classification", y, probs, 3)["accuracy"]
    assert got == pytest.approx(accuracy_score(y, probs.argmax(axis=1)))


def test_balanced_accuracy_is_sklearns():
    y, probs = _codes(60, 3), _probabilities(60, 3)
    got = metrics("classification", y, probs, 3)["balanced_accuracy"]
    assert got == pytest.approx(balanced_accuracy_score(y, probs.argmax(axis=1)))


def test_binary_roc_auc_is_of_the_positive_class():
    y, probs = _codes(60, 2), _probabilities(60, 2)
    got = metrics("classification", y, probs, 2)["roc_auc"]
    assert got == pytest.approx(roc_auc_score(y, probs[:, 1]))


def test_multiclass_roc_auc_is_one_vs_rest_macro():
    y, probs = _codes(80, 4), _probabilities(80, 4)
    got = metrics("classification", y, probs, 4)["roc_auc"]
    normalised = probs.astype("float64") / probs.sum(axis=1, keepdims=True)
    expected = roc_auc_score(y, normalised, multi_class="ovr", average="macro", labels=range(4))
    assert got == pytest.approx(expected)


def test_roc_auc_is_nan_when_a_class_is_absent():
    probs = _probabilities(30, 3)
    y = np.array([0, 1] * 15)  # class 2 never occurs
    assert math.isnan(metrics("classification", y, probs, 3)["roc_auc"])
    assert math.isnan(metrics("classification", np.zeros(30), probs[:, :2], 2)["roc_auc"])


def _regression(rows: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    y = rng.normal(10.0, 3.0, rows)
    return y, (y + rng.normal(0.0, 1.0, rows)).reshape(-1, 1).astype("float32")


def test_rmse_is_sklearns():
    y, values = _regression()
    got = metrics("regression", y, values, 0)["rmse"]
    assert got == pytest.approx(root_mean_squared_error(y, values.reshape(-1)), rel=1e-6)


def test_mae_is_sklearns():
    y, values = _regression()
    got = metrics("regression", y, values.reshape(-1), 0)["mae"]
    assert got == pytest.approx(mean_absolute_error(y, values.reshape(-1)), rel=1e-6)


def test_r2_is_sklearns():
    y, values = _regression()
    got = metrics("regression", y, values, 0)["r2"]
    assert got == pytest.approx(r2_score(y, values.reshape(-1)), rel=1e-6)


def test_mean_metrics_weights_each_part_and_skips_undefined_values():
    from tuner.training.metrics import mean_metrics

    parts = [{"accuracy": 0.5, "roc_auc": math.nan}, {"accuracy": 0.8, "roc_auc": 0.9}]
    # A chunk of 3 splits counts three times one of 1; an undefined AUC is left out.
    assert mean_metrics(parts, [1, 3]) == pytest.approx({"accuracy": 0.725, "roc_auc": 0.9})
    assert mean_metrics(parts) == pytest.approx({"accuracy": 0.65, "roc_auc": 0.9})
    assert math.isnan(mean_metrics([{"roc_auc": math.nan}], [2])["roc_auc"])

"""The baselines beside a winner: real scikit-learn fits on the tiny data, on the confirmation's
splits (chunks of `sizes` splits drawn from `seeds`)."""

import json
import math

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, log_loss, r2_score, root_mean_squared_error

from tuner.config.schema import load_config
from tuner.training.baselines import baseline_loss, score_baselines
from tuner.training.data import load_dataset, make_splits, prepare_split

SEEDS, SIZES = (11, 40), (2, 1)


@pytest.fixture
def classification(write_config):
    config = load_config(write_config())
    return config, load_dataset(config.data)


@pytest.fixture
def regression(write_config):
    data = {"target": "x2", "task": "regression", "drop": ["id", "label"]}
    config = load_config(write_config(data=data))
    return config, load_dataset(config.data)


def _parts(config, dataset):
    """The confirmation's splits, drawn here independently of the code under test."""
    size = config.evaluation.test_size
    chunks = [make_splits(dataset, n, size, seed) for seed, n in zip(SEEDS, SIZES, strict=True)]
    return [prepare_split(dataset, train, test) for chunk in chunks for train, test in chunk]


def test_class_frequencies_are_sklearns_prior_on_the_same_splits(classification):
    config, dataset = classification
    prior = score_baselines(config, dataset, SEEDS, SIZES)["prior"]
    assert prior["name"] == "class frequencies" and prior["splits"] == sum(SIZES)
    losses, accuracies = [], []
    for part in _parts(config, dataset):
        dummy = DummyClassifier(strategy="prior").fit(part.x_train, part.y_train)
        probs = dummy.predict_proba(part.x_test)
        losses.append(log_loss(part.y_test, probs, labels=[0, 1, 2]))
        accuracies.append(accuracy_score(part.y_test, dummy.predict(part.x_test)))
    assert prior["loss"] == pytest.approx(np.mean(losses))
    assert prior["loss_se"] == pytest.approx(np.std(losses, ddof=1) / math.sqrt(len(losses)))
    assert prior["metrics"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert prior["metrics"]["roc_auc"] == pytest.approx(0.5), "constant scores rank nothing"


def test_logistic_regression_is_sklearns_and_beats_the_prior(classification):
    config, dataset = classification
    found = score_baselines(config, dataset, SEEDS, SIZES)
    linear = found["linear"]
    assert linear["name"] == "logistic regression" and linear["splits"] == 3
    losses = []
    for part in _parts(config, dataset):
        model = LogisticRegression(max_iter=1000).fit(part.x_train, part.y_train)
        losses.append(log_loss(part.y_test, model.predict_proba(part.x_test), labels=[0, 1, 2]))
    assert linear["loss"] == pytest.approx(np.mean(losses), rel=1e-6)
    assert linear["loss"] < found["prior"]["loss"], "the tiny data's classes are learnable"
    assert linear["metrics"]["accuracy"] > found["prior"]["metrics"]["accuracy"]
    assert set(linear["metrics"]) == {"accuracy", "balanced_accuracy", "roc_auc"}
    json.dumps(found, allow_nan=False)  # JSON-ready, as stored in the winner's attrs


def test_regression_baselines_are_the_mean_and_ridge(regression):
    config, dataset = regression
    found = score_baselines(config, dataset, SEEDS, SIZES)
    assert (found["prior"]["name"], found["linear"]["name"]) == ("the mean", "ridge regression")
    parts = _parts(config, dataset)
    dummy = [DummyRegressor().fit(p.x_train, p.y_train).predict(p.x_test) for p in parts]
    ridge = [Ridge().fit(p.x_train, p.y_train).predict(p.x_test) for p in parts]
    prior_rmse = [root_mean_squared_error(p.y_test, d) for p, d in zip(parts, dummy, strict=True)]
    ridge_rmse = [root_mean_squared_error(p.y_test, r) for p, r in zip(parts, ridge, strict=True)]
    ridge_r2 = [r2_score(p.y_test, r) for p, r in zip(parts, ridge, strict=True)]
    assert found["prior"]["loss"] == pytest.approx(np.mean(prior_rmse), rel=1e-5)
    assert found["linear"]["loss"] == pytest.approx(np.mean(ridge_rmse), rel=1e-5)
    assert found["linear"]["metrics"]["r2"] == pytest.approx(np.mean(ridge_r2), rel=1e-5)
    assert found["prior"]["metrics"]["r2"] <= 0.0 < found["linear"]["metrics"]["r2"]


def test_a_zero_probability_costs_a_finite_loss_and_no_splits_no_baselines(classification):
    config, dataset = classification
    sure_and_wrong = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    loss = baseline_loss("classification", np.array([2, 1]), sure_and_wrong, 3)
    assert math.isfinite(loss) and loss > 10
    assert score_baselines(config, dataset, (), ()) == {}

"""The exported procedure (an ensemble of a point's networks) and its estimate, with real
training of tiny networks on synthetic data (training/ensemble.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tuner.config.schema import validate_config
from tuner.training.data import Dataset, make_splits
from tuner.training.ensemble import averaged_model, evaluate_ensemble, subset, train_members
from tuner.training.model import held_out_loss

from .conftest import BOWL_SPACE

# A network of 8 then 4 units (neuron_pct 0.016 of 500), without dropout: its training does not
# depend on which other networks share the stack, so each one can be trained again alone.
PARAMS = {"dropout": 0.0, "learning_rate": 0.01, "neuron_pct": 0.016, "neuron_shrink": 0.5}


def config(splits: int, **evaluation):
    return validate_config(
        {
            "data": {"path": "/unused.csv", "target": "label"},
            "space": BOWL_SPACE,
            "network": {"max_neurons": 500, "min_neurons": 3, "max_layers": 2},
            "evaluation": {"splits": splits, "test_size": 0.2, "epochs": 20, "patience": 3}
            | evaluation,
        }
    )


def noisy_classes(rows: int, seed: int) -> Dataset:
    """3 classes drawn from a softmax of 4 standard normal inputs: a loss well above 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4))
    logits = x @ np.array([[1.5, 0, -1.5], [0, 1, -1], [0.5, -0.5, 0], [0, 0, 0]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=row) for row in p])
    features = pd.DataFrame(x, columns=[f"x{i}" for i in range(4)])
    names = tuple(features.columns)
    return Dataset(features, labels.astype("int64"), "classification", ("a", "b", "c"), names, ())


def procedure_loss(cfg, dataset: Dataset, train, test, seed: int, members: int) -> float:
    """The exported procedure run on `train` alone, its saved model's loss on `test`."""
    preprocessor, replicas = train_members(cfg, subset(dataset, train), PARAMS, seed, members)
    model = averaged_model(replicas, members)
    x = np.asarray(preprocessor.transform(dataset.features.iloc[test]), dtype="float32")
    predictions = np.asarray(model.predict(x, verbose=0))
    return held_out_loss(replicas.arch, dataset.target[test], predictions)


def test_the_estimate_is_the_saved_procedures_loss_on_each_outer_split():
    dataset, cfg = noisy_classes(300, seed=0), config(splits=2)
    score = evaluate_ensemble(cfg, dataset, PARAMS, seed=11, members=2)
    assert len(score.split_losses) == len(score.epochs) == 2
    assert score.loss == pytest.approx(np.mean(score.split_losses))
    assert score.loss_std == pytest.approx(np.std(score.split_losses, ddof=1))
    assert set(score.metrics) == {"accuracy", "balanced_accuracy", "roc_auc"}
    # Outer split o is the procedure on its training rows with seed 11 + o * 2 networks.
    outer = make_splits(dataset, 2, 0.2, 11)
    for index, (train, test) in enumerate(outer):
        again = procedure_loss(cfg, dataset, train, test, 11 + 2 * index, 2)
        assert again == pytest.approx(score.split_losses[index], rel=1e-3)


def test_averaging_two_networks_is_no_worse_than_their_mean_loss():
    # Log loss is convex in the probabilities: the ensemble's loss is at most its members'.
    dataset, cfg = noisy_classes(300, seed=1), config(splits=1)
    train, test = make_splits(dataset, 1, 0.2, 5)[0]
    preprocessor, replicas = train_members(cfg, subset(dataset, train), PARAMS, 5, 2)
    x = np.asarray(preprocessor.transform(dataset.features.iloc[test]), dtype="float32")
    each = replicas.predict(x)
    y = dataset.target[test]
    alone = [held_out_loss(replicas.arch, y, p) for p in each]
    assert held_out_loss(replicas.arch, y, each.mean(axis=0)) <= np.mean(alone) + 1e-9


def test_the_exported_models_loss_on_unseen_rows_agrees_with_the_estimate():
    """For 3 seeds: the estimate from 2,000 rows, against the loss of the procedure trained on
    all 2,000 (what export saves) on 4,000 rows it never saw. Their mean difference is within 3
    standard errors of the two (the estimate's over its outer splits, the unseen rows' own)."""
    cfg = config(splits=3, epochs=15)
    differences, variances = [], []
    for seed in range(3):
        dataset = noisy_classes(2000, seed=100 + seed)
        unseen = noisy_classes(4000, seed=200 + seed)
        estimate = evaluate_ensemble(cfg, dataset, PARAMS, seed, members=3)
        preprocessor, replicas = train_members(cfg, dataset, PARAMS, seed, 3)
        x = np.asarray(preprocessor.transform(unseen.features), dtype="float32")
        p = np.asarray(averaged_model(replicas, 3).predict(x, verbose=0), dtype="float64")
        p /= p.sum(axis=1, keepdims=True)
        per_row = -np.log(np.clip(p[np.arange(len(p)), unseen.target], 1e-15, None))
        differences.append(estimate.loss - per_row.mean())
        estimate_se = estimate.loss_std / np.sqrt(len(estimate.split_losses))
        variances.append(estimate_se**2 + per_row.var(ddof=1) / len(per_row))
    se = np.sqrt(np.sum(variances)) / len(differences)
    assert abs(np.mean(differences)) <= 3 * se, (differences, se)


def test_a_regression_estimate_is_in_the_targets_units():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    y = (1000.0 * x[:, 0] + rng.normal(0, 300.0, 300)).astype("float32")
    features = pd.DataFrame(x, columns=["x0", "x1"])
    dataset = Dataset(features, y, "regression", (), ("x0", "x1"), ())
    score = evaluate_ensemble(config(splits=2), dataset, PARAMS, seed=4, members=2)
    assert set(score.metrics) == {"rmse", "mae", "r2"}
    assert score.metrics["rmse"] == pytest.approx(score.loss)
    assert 200.0 < score.loss < 1000.0, "between the noise and the target's spread"

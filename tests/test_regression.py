"""Regression at any scale: the target trains standardised, the loss is RMSE in its units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tuner
from tests.conftest import ROOT, tiny_config_dict
from tuner.config.schema import EvaluationConfig, NetworkConfig
from tuner.training.architecture import decode
from tuner.training.data import PreparedSplit, load_dataset, make_splits, target_scale
from tuner.training.evaluate import evaluate_point
from tuner.training.trainer import train_splits

# A point nobody tuned: the middle of configs/default.yaml's space.
DEFAULT_POINT = {
    "dropout": 0.1,
    "learning_rate": 1e-3,
    "neuron_pct": 0.01,
    "neuron_shrink": 0.5,
    "batch_size": 32,
}


def curve(seed: int, scale: float, rows: int = 150) -> PreparedSplit:
    """A learnable target: a curve of two inputs plus a little noise, times `scale`."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3)).astype("float32")
    y = (3 + x[:, 0] - 0.5 * x[:, 1] ** 2 + rng.normal(0, 0.2, rows)) * scale
    cut = int(rows * 0.8)
    return PreparedSplit(x[:cut], y[:cut].astype("float32"), x[cut:], y[cut:].astype("float32"))


def test_the_scale_is_the_training_parts_mean_and_std_and_inverts():
    y = np.array([2.0, 4.0, 6.0], dtype="float32")
    scale = target_scale("regression", y)
    assert (scale.mean, scale.std) == pytest.approx((4.0, np.std(y)))
    np.testing.assert_allclose(scale.inverse(scale.forward(y)), y, rtol=1e-6)
    assert target_scale("regression", np.full(4, 7.0, dtype="float32")).std == 1.0
    codes = np.array([0, 2, 1])
    assert target_scale("classification", codes).forward(codes) is codes


def test_multiplying_the_target_multiplies_the_held_out_rmse():
    arch = decode(DEFAULT_POINT, NetworkConfig(min_neurons=5), 3, 1, "regression")
    evaluation = EvaluationConfig(epochs=25, patience=3)
    small = train_splits(arch, DEFAULT_POINT, [curve(1, 1.0), curve(2, 1.0)], evaluation, 5)
    large = train_splits(arch, DEFAULT_POINT, [curve(1, 1e5), curve(2, 1e5)], evaluation, 5)
    assert [r.epochs for r in large] == [r.epochs for r in small]
    for big, unit in zip(large, small, strict=True):
        assert big.loss == pytest.approx(unit.loss * 1e5, rel=1e-3)
        assert big.metrics["rmse"] == pytest.approx(big.loss)
        assert big.metrics["r2"] == pytest.approx(unit.metrics["r2"], abs=1e-3)


def test_the_default_point_beats_the_training_mean_on_a_price_scale_target(tmp_path):
    rng = np.random.default_rng(0)
    rows = 300
    frame = pd.DataFrame({"x1": rng.normal(size=rows), "x2": rng.normal(size=rows)})
    frame["kind"] = rng.choice(["flat", "house"], rows)
    premium = np.where(frame["kind"] == "house", 60_000, 0)
    noise = rng.normal(0, 5_000, rows)
    frame["price"] = 250_000 + 40_000 * frame["x1"] - 20_000 * frame["x2"] + premium + noise
    csv = tmp_path / "prices.csv"
    frame.to_csv(csv, index=False)
    data = {"target": "price", "task": "regression", "drop": []}
    config = tuner.load_config(
        tiny_config_dict(csv, data=data, evaluation={"epochs": 60, "patience": 5})
    )
    dataset = load_dataset(config.data)
    score = evaluate_point(config, dataset, DEFAULT_POINT, seed=4)
    # The mean's RMSE: each split's training mean predicted for its held-out part.
    splits = make_splits(dataset, config.evaluation.splits, config.evaluation.test_size, 4)
    y = dataset.target.astype("float64")
    mean_rmse = np.mean([np.sqrt(np.mean((y[te] - y[tr].mean()) ** 2)) for tr, te in splits])
    assert score.loss < 0.5 * mean_rmse
    assert score.metrics["rmse"] == pytest.approx(score.loss)
    assert score.metrics["r2"] > 0.7
    assert set(score.to_dict()["metrics"]) == {"rmse", "mae", "r2"}


def test_a_search_of_the_shipped_regression_config_beats_predicting_the_mean(tmp_path):
    overrides = [
        "evaluation.epochs=40",
        "evaluation.patience=5",
        "search.init_points=2",
        "search.n_iter=1",
        "search.final_candidates=1",
        "search.final_splits=2",
        "search.confirm_splits=2",
        "search.final_share=0.9",  # a loaded machine would cut the end otherwise
    ]
    config = tuner.load_config(ROOT / "configs" / "regression.yaml", overrides)
    result = tuner.search(config, out=tmp_path / "run", study="regression")
    mass = pd.read_csv(ROOT / "data" / "penguins.csv")["body_mass_g"].dropna()
    assert result.winner.loss < float(mass.std())
    assert result.best.metrics["rmse"] == pytest.approx(result.best.loss)

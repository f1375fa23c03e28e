"""The split-difficulty adjustment of the winner's reported loss (tuner/difficulty.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tuner.config import load_config
from tuner.data import load_dataset, make_splits, prepare_split
from tuner.difficulty import (
    MAX_SLOPE,
    Difficulty,
    baseline_fits,
    baseline_losses,
    reference_seed,
    slope,
)

ROOT = Path(__file__).resolve().parents[1]


def test_the_slope_is_fitted_within_each_point_and_clipped():
    rng = np.random.default_rng(0)
    x = rng.normal(0.7, 0.05, size=10)
    # Three points whose levels fall as their baseline mean rises: across points the slope
    # would be negative, within each it is 1.2.
    groups = [(level + 1.2 * (x + shift), x + shift) for level, shift in [(0.9, 0), (0.5, 0.1)]]
    groups.append((0.1 + 1.2 * (x + 0.2), x + 0.2))
    fitted, pairs = slope(groups)
    assert fitted == pytest.approx(1.2) and pairs == 30
    assert slope([(-x, x)]) == (0.0, 10), "a negative slope adjusts nothing"
    assert slope([(9 * x, x)]) == (MAX_SLOPE, 10)
    assert slope([(x[:5], x[:5])]) == (0.0, 5), "too few pairs"
    bad = (np.append(x[:4], np.nan), x[:5])
    assert slope([bad, (2 * x, x)]) == (pytest.approx(2.0), 10), "a group with a NaN is skipped"
    assert slope([(x, np.full(10, 0.7))]) == (0.0, 10), "no spread in the baseline"


def difficulty(baseline, slope_=1.0, reference=0.70, reference_std=0.04, reference_splits=50):
    return Difficulty(
        seeds=(11, 13),
        splits=len(baseline),
        baseline=tuple(baseline),
        reference_seed=5,
        reference_splits=reference_splits,
        reference=reference,
        reference_std=reference_std,
        slope=slope_,
        pairs=20,
    )


def test_the_adjusted_mean_and_its_standard_error():
    losses, baseline = [0.60, 0.64, 0.62, 0.66], [0.66, 0.70, 0.67, 0.71]
    found = difficulty(baseline, slope_=1.5)
    loss, se = found.adjusted(losses)
    # The splits are 0.015 easier than the reference for the baseline: 0.0225 for the network.
    assert found.shift == pytest.approx(1.5 * (0.685 - 0.70))
    assert loss == pytest.approx(0.63 + 0.0225)
    left = np.array(losses) - 1.5 * np.array(baseline)
    expected = math.sqrt(left.var(ddof=1) / 4 + (1.5 * 0.04 / math.sqrt(50)) ** 2)
    assert se == pytest.approx(expected)
    assert difficulty(baseline, slope_=0.0).adjusted(losses) == (
        pytest.approx(0.63),
        pytest.approx(np.std(losses, ddof=1) / 2),
    ), "slope 0 is the plain mean"
    again = Difficulty.from_dict(found.to_dict())
    assert again == found and again.holds((11, 13), 4, 50)
    assert not again.holds((11, 13), 4, 40) and not again.holds((11, 17), 4, 50)


def test_the_adjustment_is_unbiased_and_much_closer_to_the_truth():
    """Splits whose difficulty moves every model alike (as measured: the networks' and the
    logistic regression's split losses correlate at 0.9 or more): the adjusted mean on 10
    splits, slope fitted on 40 pairs, 100 reference splits, against the plain mean, 2000 draws."""
    rng = np.random.default_rng(1)
    truth, raw_errors, adjusted_errors, covered = 0.65, [], [], 0
    for _ in range(2000):
        hard_final, hard_own = rng.normal(0, 0.05, size=(2, 10))
        base_final = 0.70 + hard_final + rng.normal(0, 0.01, size=10)
        base_own = 0.70 + hard_own + rng.normal(0, 0.01, size=10)
        levels = truth + rng.normal(0, 0.02, size=3)
        finals = [level + 1.1 * hard_final + rng.normal(0, 0.015, size=10) for level in levels]
        own = truth + 1.1 * hard_own + rng.normal(0, 0.015, size=10)
        fitted, _ = slope([(final, base_final) for final in finals] + [(own, base_own)])
        reference = 0.70 + rng.normal(0, 0.05, size=100) + rng.normal(0, 0.01, size=100)
        found = difficulty(base_own, fitted, reference.mean(), reference.std(ddof=1), 100)
        loss, se = found.adjusted(own)
        raw_errors.append(own.mean() - truth)
        adjusted_errors.append(loss - truth)
        covered += abs(loss - truth) <= 1.96 * se
    raw, adjusted = np.array(raw_errors), np.array(adjusted_errors)
    assert abs(adjusted.mean()) < 0.001, "unbiased"
    assert np.sqrt(np.mean(adjusted**2)) < 0.5 * np.sqrt(np.mean(raw**2))
    assert 0.90 < covered / 2000 < 0.98, "the standard error covers the truth as it says"


@pytest.fixture(scope="module")
def penguins():
    config = load_config(ROOT / "configs" / "default.yaml")
    return config, load_dataset(config.data)


def test_the_baseline_scores_the_splits_a_network_with_that_seed_scores(penguins):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    config, dataset = penguins
    test_size = config.evaluation.test_size
    losses = baseline_losses(dataset, 42, 4, test_size)
    assert losses == baseline_losses(dataset, 42, 4, test_size), "deterministic"
    assert len(set(losses)) == 4 and all(0 < x < math.log(3) for x in losses), "beats chance"
    train, test = make_splits(dataset, 4, test_size, 42)[2]
    part = prepare_split(dataset, train, test)
    model = LogisticRegression(max_iter=5000).fit(part.x_train, part.y_train)
    direct = log_loss(part.y_test, model.predict_proba(part.x_test), labels=[0, 1, 2])
    assert losses[2] == pytest.approx(direct, abs=0.01), "its third split is the third split"


def test_the_baseline_of_a_regression_is_its_rmse(tmp_path):
    from tests.conftest import make_tiny_frame, tiny_config_dict
    from tuner.config import validate_config

    frame = make_tiny_frame(rows=120)
    csv = tmp_path / "tiny.csv"
    frame.to_csv(csv, index=False)
    raw = tiny_config_dict(csv)
    raw["data"] = {**raw["data"], "target": "x2", "task": "regression"}
    dataset = load_dataset(validate_config(raw).data)
    losses = baseline_losses(dataset, 3, 3, 0.2)
    spread = float(np.std(dataset.target))
    assert len(losses) == 3 and all(0 < x < 1.5 * spread for x in losses)


def test_the_reference_seed_and_the_fits_a_search_makes(penguins):
    config, _ = penguins
    assert reference_seed(1) == reference_seed(1) != reference_seed(2)
    assert baseline_fits(config) == 100 + 10 + 10
    off = config.model_copy(
        update={"search": config.search.model_copy(update={"final_candidates": 0})}
    )
    assert baseline_fits(off) == 0

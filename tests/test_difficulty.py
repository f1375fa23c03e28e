"""The split-difficulty adjustment of the winner's reported loss (tuner/difficulty.py)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.objectives import bowl_loss
from tuner.config.schema import load_config
from tuner.outputs.progress import QuietReporter
from tuner.search.api import search
from tuner.study.store import Storage, sqlite_url
from tuner.study.winner import winner
from tuner.training.data import load_dataset, make_splits, prepare_split
from tuner.training.difficulty import (
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
    fitted, pairs, se = slope(groups)
    assert fitted == pytest.approx(1.2) and pairs == 30 and se == pytest.approx(0.0, abs=1e-9)
    assert slope([(-x, x)])[:2] == (0.0, 10), "a negative slope adjusts nothing"
    assert slope([(9 * x, x)])[:2] == (MAX_SLOPE, 10)
    assert slope([(x[:5], x[:5])]) == (0.0, 5, 0.0), "too few pairs"
    bad = (np.append(x[:4], np.nan), x[:5])
    assert slope([bad, (2 * x, x)])[:2] == (pytest.approx(2.0), 10), "a group with NaN is skipped"
    assert slope([(x, np.full(10, 0.7))]) == (0.0, 10, 0.0), "no spread in the baseline"
    # Its standard error: that of an ordinary least-squares slope with one intercept a group.
    noisy = [(y + rng.normal(0, 0.02, size=10), x) for y, x in groups]
    fitted, _, se = slope(noisy)
    dx = np.concatenate([g[1] - g[1].mean() for g in noisy])
    dy = np.concatenate([g[0] - g[0].mean() for g in noisy])
    residual = dy - fitted * dx
    assert se == pytest.approx(np.sqrt(residual @ residual / (30 - 3 - 1) / (dx @ dx)))


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
    with_se = replace(found, slope_se=0.1)
    assert with_se.adjusted(losses)[1] == pytest.approx(math.sqrt(expected**2 + 0.0015**2))
    assert difficulty(baseline, slope_=0.0).adjusted(losses) == (
        pytest.approx(0.63),
        pytest.approx(np.std(losses, ddof=1) / 2),
    ), "slope 0 is the plain mean"
    again = Difficulty.from_dict(found.to_dict())
    assert again == found and again.holds((11, 13), 4, 50)
    assert not again.holds((11, 13), 4, 40) and not again.holds((11, 17), 4, 50)
    assert again.scores((11, 13), 4) and not again.scores((11, 13), 5)


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
        fitted, _, fitted_se = slope([(final, base_final) for final in finals] + [(own, base_own)])
        reference = 0.70 + rng.normal(0, 0.05, size=100) + rng.normal(0, 0.01, size=100)
        found = difficulty(base_own, fitted, reference.mean(), reference.std(ddof=1), 100)
        found = replace(found, slope_se=fitted_se)
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
    for k, (train, test) in enumerate(make_splits(dataset, 4, test_size, 42)):
        part = prepare_split(dataset, train, test)
        model = LogisticRegression(tol=1e-3, max_iter=1000).fit(part.x_train, part.y_train)
        direct = log_loss(part.y_test, model.predict_proba(part.x_test), labels=[0, 1, 2])
        assert losses[k] == pytest.approx(direct, rel=1e-6), f"split {k} is the network's"


def test_the_baseline_of_a_regression_is_its_rmse(tmp_path):
    from tests.conftest import make_tiny_frame, tiny_config_dict
    from tuner.config.schema import validate_config

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


class Recording(QuietReporter):
    """Keeps the split-difficulty lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def difficulty_started(self, trial, splits) -> None:
        self.lines.append(f"started #{trial.number} {splits}")

    def difficulty_failed(self, error) -> None:
        self.lines.append(f"failed {error}")


def _search(path: Path, url: str, resume: bool = False, *overrides: str) -> tuple:
    reporter = Recording()
    result = search(
        load_config(path, overrides),
        storage_url=url,
        study_name="s",
        resume=resume,
        reporter=reporter,
        factory="tests.objectives:follows_baseline",
    )
    return result.winner, reporter.lines


def test_split_losses_that_follow_the_baseline_are_adjusted_to_its_reference(
    write_config, tmp_path
):
    """Each split's loss is the point's bowl plus the baseline's loss on that very split: the
    slope is 1 and the adjusted loss is the bowl plus the reference's mean. Only exact
    alignment of the baseline with the scored splits (chunks of 2, 2 and 1) gives that."""
    search_ = {"init_points": 4, "n_iter": 2, "seed": 3, "final_splits": 5, "confirm_splits": 5}
    path = write_config(search={**search_, "difficulty_splits": 20})
    url = sqlite_url(tmp_path / "study.db")
    found, lines = _search(path, url)
    difficulty = found.difficulty
    assert (
        difficulty is not None
        and found.confirmed
        and lines == [f"started #{found.trial.number} 20"]
    )
    assert difficulty.slope == pytest.approx(1.0, abs=1e-9) and difficulty.pairs == 20
    assert difficulty.seeds == found.trial.confirm.seeds and len(difficulty.baseline) == 5
    bowl = bowl_loss(found.trial.params)
    assert found.loss == pytest.approx(bowl + difficulty.reference, abs=1e-9)
    assert found.raw_loss == pytest.approx(bowl + np.mean(difficulty.baseline), abs=1e-9)
    assert found.raw_loss != pytest.approx(found.loss, abs=1e-4), "the splits were not typical"
    # Resumed: kept, not measured again; then turned off: the plain mean again.
    again, lines = _search(path, url, True)
    assert lines == [] and again.difficulty == difficulty and again.loss == found.loss
    off, lines = _search(path, url, True, "search.difficulty_splits=0")
    assert off.difficulty is None and off.loss == found.raw_loss and lines == []


def test_a_failing_baseline_leaves_the_loss_unadjusted(write_config, tmp_path, monkeypatch):
    def boom(*_args, **_kwargs):
        raise ValueError("no baseline here")

    monkeypatch.setattr("tuner.training.difficulty.baseline_losses", boom)
    path = write_config(search={"init_points": 3, "n_iter": 0, "seed": 3, "final_splits": 4})
    found, lines = _search(path, sqlite_url(tmp_path / "study.db"))
    assert lines[-1] == "failed ValueError: no baseline here"
    assert found.difficulty is None and found.raw_loss is None and found.confirmed
    assert found.loss == found.trial.confirm.loss


class Timed:
    """The real baseline on the study's data, with a fixed number of fits left."""

    def __init__(self, config, room: int) -> None:
        self.dataset, self.test_size, self.fits = load_dataset(config.data), 0.2, room

    def __call__(self, seed: int, splits: int) -> tuple[float, ...]:
        return baseline_losses(self.dataset, seed, splits, self.test_size)

    def room(self) -> int:
        return self.fits


def test_a_time_budget_cuts_the_reference_splits_to_the_fits_left(write_config, tmp_path):
    from tuner.search.final import adjust_winner

    search_ = {"init_points": 3, "n_iter": 0, "seed": 3, "final_splits": 4, "confirm_splits": 4}
    path = write_config(search={**search_, "difficulty_splits": 0})
    url = sqlite_url(tmp_path / "study.db")
    found, _ = _search(path, url)
    assert found.difficulty is None and found.confirmed
    config = load_config(path, ["search.difficulty_splits=30"])
    storage = Storage(url)
    try:
        study, reporter = storage.get_study("s"), Recording()
        # 4 final and 4 confirmation splits first: 14 of the 22 fits left for the reference.
        adjust_winner(config, storage, study, Timed(config, 22), reporter)
        cut = winner(storage.trials(study))
        assert cut.difficulty.reference_splits == 14 and reporter.lines[-1].endswith(" 14")
        adjust_winner(config, storage, study, Timed(config, 17), reporter)
        assert reporter.lines[-1] == "failed too little of the time budget left"
        assert adjust_winner(config, storage, study, Timed(config, 99), reporter) is None
        assert winner(storage.trials(study)).difficulty.reference_splits == 30
    finally:
        storage.close()

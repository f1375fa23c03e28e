"""benchmarks/loss_fence.py on a search log written by hand: a bowl with a diverged region."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from benchmarks.loss_fence import compare, load, main, simulate, split_losses
from tuner.config.schema import validate_config
from tuner.config.space import SearchSpace

from .conftest import BOWL_SPACE, NO_DATA

NAMES = ("dropout", "learning_rate", "neuron_pct", "neuron_shrink")


def write_log(path, n=60, seed=0):
    """A log of `tuner search` lines: a bowl at 0.4 of each unit range, and a loss of 20 to 30
    past 0.85 of the learning rate's log range (a diverged network)."""
    rng = np.random.default_rng(seed)
    lines = ["study s: 0 of 60 trials done"]
    for i, u in enumerate(rng.uniform(size=(n, 4))):
        loss = 0.6 + 0.3 * float(np.sum((u - 0.4) ** 2))
        if u[1] > 0.85:
            loss = float(rng.uniform(20, 30))
        values = (0.5 * u[0], 10 ** (-4 + 3 * u[1]), 0.01 + 0.99 * u[2], 0.01 + 0.99 * u[3])
        point = " ".join(f"{k}={v:.6g}" for k, v in zip(NAMES, values, strict=True))
        raced = " (raced: 6 splits)" if i % 7 == 0 else ""
        lines.append(f"trial {i:3d}  {point}  loss {loss:.4f} ± 0.0300{raced}  best 0.6 (#0)  1.0s")
    lines.append("trial   3  re-scored 0.6100 ± 0.0100 (se)  search 0.6000  2.0s")  # not a trial
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_losses_have_the_logged_mean_and_spread():
    for n in (2, 3, 6):
        values = split_losses(0.7, 0.05, n)
        assert len(values) == n
        assert np.mean(values) == pytest.approx(0.7) and np.std(values, ddof=1) == pytest.approx(
            0.05
        )
    assert split_losses(0.7, 0.05, 1) == (0.7,)


def test_the_fenced_gp_picks_better_points_of_a_bowl_with_a_diverged_region(tmp_path):
    log = write_log(tmp_path / "search.log")
    trials = load([log], NAMES)
    assert len(trials) == 60, "one per trial line; the re-score line is not a trial"
    assert sum(splits == 6 for *_, splits in trials) == 9, "raced trials have 6 splits"
    cfg = validate_config({"data": NO_DATA, "space": BOWL_SPACE})
    found = compare(SearchSpace(cfg.space), cfg.search, trials, [15], draws=8, seed=1)
    fenced, plain = found[(15, "fence")], found[(15, "no fence")]
    assert fenced.shape == plain.shape == (8, 2)
    assert fenced[:, 0].mean() < plain[:, 0].mean(), (fenced, plain)
    assert fenced[:, 0].mean() < 1.0, (
        "the fenced GP's picks are in the bowl, not the diverged region"
    )


def test_surrogate_searches_on_a_bowl_with_a_diverged_region_run_both_ways(tmp_path):
    trials = load([write_log(tmp_path / "search.log", n=80)], NAMES)
    cfg = validate_config({"data": NO_DATA, "space": BOWL_SPACE, "search": {"init_points": 5}})
    runs = simulate(SearchSpace(cfg.space), cfg.search, trials, n_trials=8, seeds=[1, 2, 3])
    fence, plain = runs["fence"], runs["no fence"]
    assert fence.shape == plain.shape == (3, 3)
    # The same seeded random start: neither can pick worse than its best, and the true losses
    # of the bowl are over 0.6 (the surrogate's floor).
    for rows in (fence, plain):
        assert np.all(rows[:, 1] <= rows[:, 0]) and np.all(rows[:, 1] > 0.55)
        assert np.all((rows[:, 2] >= 0) & (rows[:, 2] <= 3)), "guided trials over 1: of 3"
    assert not np.array_equal(fence, plain), "the fence changes where the searches go"


def test_the_script_prints_both_rows_per_history_size(tmp_path, monkeypatch, capsys):
    log = write_log(tmp_path / "search.log")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"data": NO_DATA, "space": BOWL_SPACE}))
    argv = ["loss_fence.py", str(log), "--config", str(config), "--draws", "2", "--sizes", "12",
            "--searches", "2", "--trials", "12"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    main()
    out = capsys.readouterr().out
    assert out.startswith("60 distinct trials;")
    assert "history  12  fence " in out and "history  12  no fence" in out
    assert "surrogate searches of 12 trials, 2 seeds" in out and "guided > 1" in out

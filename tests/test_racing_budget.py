"""benchmarks/racing_budget.py on a search log written by hand: a bowl whose larger networks
take longer, searched under a small time budget on the simulated clock."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from benchmarks.racing_budget import fitted, load, main, search
from tuner.config.schema import validate_config
from tuner.config.space import SearchSpace
from tuner.study.store import TrialRecord, TrialState
from tuner.study.winner import finalist_order, ranked
from tuner.training.data import load_dataset
from tuner.training.evaluate import size_limit

from .conftest import BOWL_SPACE, NO_DATA

NAMES = ("dropout", "learning_rate", "neuron_pct", "neuron_shrink")


def write_log(path, n=60, seed=0):
    """`tuner search` trial lines: a bowl at 0.4 of each unit range; seconds 2 to 12, growing
    with `neuron_pct`."""
    rng = np.random.default_rng(seed)
    lines = ["study s: 0 of 60 trials done"]
    for i, u in enumerate(rng.uniform(size=(n, 4))):
        loss = 0.6 + 0.3 * float(np.sum((u - 0.4) ** 2))
        values = (0.5 * u[0], 10 ** (-4 + 3 * u[1]), 0.01 + 0.99 * u[2], 0.01 + 0.99 * u[3])
        point = " ".join(f"{k}={v:.6g}" for k, v in zip(NAMES, values, strict=True))
        raced = " (raced: 6 splits)" if i % 7 == 0 else ""
        seconds = 2 + 10 * u[2]
        lines.append(
            f"trial {i:3d}  {point}  loss {loss:.4f} ± 0.0300{raced}  best 0.6 (#0)  {seconds:.1f}s"
        )
    lines.append("trial   3  re-scored 0.6100 ± 0.0100 (se)  search 0.6000  2.0s")  # not a trial
    path.write_text("\n".join(lines) + "\n")
    return path


def raw_config(csv):
    return {
        "data": {"path": str(csv), "target": "label", "drop": ["id"]},
        "space": BOWL_SPACE,
        "evaluation": {"splits": 2, "max_params": 10**9},
        "search": {"init_points": 4, "n_iter": 10**6, "time_budget": 150, "final_share": 0.3},
    }


def test_searches_keep_the_budget_and_race_only_where_the_policy_says(tmp_path, tiny_csv):
    trials = load([write_log(tmp_path / "search.log")], NAMES)
    assert len(trials) == 60, "one per trial line; the re-score line is not a trial"
    assert all(2 <= secs <= 12 for *_, secs in trials)
    config = validate_config(raw_config(tiny_csv))
    surrogate = fitted(SearchSpace(config.space), trials, speed=1.0)
    allowed = size_limit(config, load_dataset(config.data))
    runs = {p: [search(config, surrogate, allowed, p, s) for s in (1, 2, 3)] for p in
            ("shipped", "early", "off", "racefit", "off-cautious")}  # fmt: skip
    for policy, outcomes in runs.items():
        for out in outcomes:
            # 150 s with a 15 s start and 2-12 s calls: a handful of trials, not the 10**6.
            assert 4 <= out.trials <= 60, (policy, out)
            assert out.best <= out.among <= out.truth, "the winner is a finalist, not the best"
            assert out.finalists <= 3 and (out.finalists == 0 or out.final_splits >= 2)
            assert abs(out.reported - out.truth) < 0.3, "a mean of noisy losses of the winner"
    for policy in ("off", "off-cautious"):
        assert all(out.racing == 0 and out.first_race is None for out in runs[policy])
    for out in runs["shipped"]:  # as in tuner, each trial on splits of its own seed
        assert len({t.seed for t in out.records}) == out.trials
        means = {t.number: float(np.mean(t.split_losses)) for t in out.records}
        assert all(t.level_var == 0 and t.loss == means[t.number] for t in ranked(out.records)), (
            "independent trials are not adjusted for shared split difficulty"
        )
    shipped, early = runs["shipped"], runs["early"]
    assert any(out.racing > 0 for out in shipped), "the config's racing races"
    assert all(out.first_race is None or out.first_race >= 4 for out in shipped), (
        "tuner's rule races no random start-up point (4 here)"
    )
    assert any(out.first_race is not None and out.first_race < 4 for out in early), early
    assert any(out.racing > 0 for out in runs["racefit"]), "racefit races where rounds fit"
    assert all(out.late == 0 for out in runs["racefit"]), "but no round into the end's time"
    # The same seeds, less racing: no fewer trials in total.
    trials_of = {p: sum(o.trials for o in outs) for p, outs in runs.items()}
    assert trials_of["off"] >= trials_of["shipped"] >= trials_of["early"], trials_of


def test_racefit_starts_no_round_into_the_ends_time_where_the_rule_before_did(tmp_path, tiny_csv):
    trials = load([write_log(tmp_path / "search.log")], NAMES)
    raw = raw_config(tiny_csv)
    raw["search"] |= {"time_budget": 120}  # short: the end comes while trials still race
    config = validate_config(raw)
    surrogate = fitted(SearchSpace(config.space), trials, speed=1.0)
    allowed = size_limit(config, load_dataset(config.data))
    late = {p: [search(config, surrogate, allowed, p, s).late for s in (2, 4, 8)] for p in
            ("shipped", "racefit", "post", "post-cautious")}  # fmt: skip
    assert sum(late["shipped"]) > 0 and sum(late["racefit"]) == 0, late
    # The posterior orders race as racefit, so they differ from it only in the finalists.
    assert sum(late["post"]) == sum(late["post-cautious"]) == 0, late


def test_cautious_ranks_a_mean_on_few_splits_below_a_close_one_on_many():
    def trial(number, losses):
        return TrialRecord(
            number, TrialState.COMPLETE, {}, {"x": number}, 100 + number,
            loss=float(np.mean(losses)),
            split_losses=tuple(losses),
        )  # fmt: skip

    lucky = trial(0, [0.60, 0.64])  # mean 0.62 on 2 splits
    raced = trial(1, [0.58, 0.66, 0.60, 0.64, 0.61, 0.65])  # mean 0.6233 on 6
    poor = trial(2, [0.70, 0.74])
    # The benchmark's `racefit` and `cautious` orders: caution 0 and 1.
    assert finalist_order([poor, raced, lucky], 0.0) == [lucky, raced, poor]
    assert finalist_order([poor, raced, lucky], 1.0) == [raced, lucky, poor]
    single = [trial(3, [0.60]), trial(4, [0.59])]
    assert finalist_order(single, 1.0) == single[::-1], "no split variance to go by: as ranked"


def test_a_point_logged_twice_is_merged_whatever_the_logs_order(tmp_path):
    point = "dropout=0.1 learning_rate=0.001 neuron_pct=0.2 neuron_shrink=0.5"
    other = "dropout=0.3 learning_rate=0.01 neuron_pct=0.1 neuron_shrink=0.2"
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(
        f"trial   0  {point}  loss 0.6000 ± 0.0400  best 0.6 (#0)  4.0s\n"
        f"trial   1  {other}  loss 0.7000 ± 0.0100  best 0.6 (#0)  2.0s\n"
    )
    raced = "loss 0.6400 ± 0.0200 (raced: 6 splits)  best 0.64 (#0)  8.0s"
    second.write_text(f"trial   0  {point}  {raced}\n")
    forward, backward = load([first, second], NAMES), load([second, first], NAMES)
    assert sorted(forward) == sorted(backward) and len(forward) == 2
    merged = next(t for t in forward if t[0][0] == 0.1)
    assert merged[1] == pytest.approx((2 * 0.60 + 6 * 0.64) / 8), "weighted by splits"
    assert merged[2] == pytest.approx(6.0), "the mean of its lines' seconds"


def test_the_script_prints_a_row_per_policy(tmp_path, tiny_csv, monkeypatch, capsys):
    log = write_log(tmp_path / "search.log")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw_config(tiny_csv)))
    argv = ["racing_budget.py", str(log), "--config", str(path), "--searches", "2",
            "--budget", "120", "--policies", "shipped,early"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    main()
    out = capsys.readouterr().out
    assert out.startswith("60 logged trials; 2 searches of 120 s per policy")
    assert "shipped  winner's true loss" in out and "early    winner's true loss" in out
    assert out.count("- shipped ") == 2
    assert out.count("reported - true ") == 2 and out.count(" of 2 with no final") == 2


def test_students_t_split_noise_has_the_same_spread_and_heavier_tails(tmp_path):
    trials = load([write_log(tmp_path / "search.log")], NAMES)
    space = SearchSpace(validate_config({"data": NO_DATA, "space": BOWL_SPACE}).space)
    point = space.point({"dropout": 0.2, "learning_rate": 1e-3, "neuron_pct": 0.4,
                         "neuron_shrink": 0.4})  # fmt: skip
    draws = {}
    for df in (None, 3.0):
        surrogate = fitted(space, trials, speed=1.0, df=df)
        draws[df] = np.array(surrogate.splits(point, 40_000, np.random.default_rng(0)))
    gauss, heavy = draws[None], draws[3.0]
    assert gauss.mean() == pytest.approx(heavy.mean(), abs=0.002)
    assert gauss.std() == pytest.approx(0.064, rel=0.03)
    assert heavy.std() == pytest.approx(0.064, rel=0.1)
    tail = 4 * 0.064  # four standard deviations out
    far = {df: np.mean(np.abs(d - d.mean()) > tail) for df, d in draws.items()}
    assert far[3.0] > 5 * far[None], far

"""The time budget keeps time for the final re-score and cuts it to what is left (budget.py)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from functools import partial

import pytest
from click.testing import CliRunner

from tuner.cli.commands import cli
from tuner.config.schema import validate_config
from tuner.engine.budget import (
    Deadline,
    call_seconds,
    describe_cut,
    end_seconds,
    final_reserve,
    fit_final,
    pending,
    plan,
)
from tuner.engine.final import candidates, final_seeds
from tuner.engine.loop import open_study
from tuner.study.records import NewTrial
from tuner.study.store import FinalScore, Storage, TrialRecord, TrialState, sqlite_url

from .conftest import BOWL_SPACE, NO_DATA


def config(**search):
    return validate_config({"data": NO_DATA, "space": BOWL_SPACE, "search": search})


def done(number: int, loss: float, seconds: float) -> TrialRecord:
    return TrialRecord(
        number,
        TrialState.COMPLETE,
        {},
        {"dropout": number / 100},
        number,
        loss=loss,
        split_losses=(loss, loss),
        seconds=seconds,
    )


TRIALS = [done(0, 0.5, 2.0), done(1, 0.4, 4.0), done(2, 0.6, 1.0), done(3, 0.9, 30.0)]


@pytest.mark.parametrize(
    ("calls", "expected"),
    [(20, (3, 5, 5)), (19, (3, 4, 5)), (8, (3, 2, 2)), (7, (2, 2, 3)), (5, (1, 5, 0)),
     (1, (1, 1, 0)), (0, (0, 0, 0))],
)  # fmt: skip
def test_the_plan_drops_finalists_before_going_under_four_splits_each(calls, expected):
    assert plan(calls * 2.0, (2.0, 2.0, 2.0), 5, 5, splits=2) == expected


def test_the_plan_in_other_shapes():
    same = (1.0, 1.0, 1.0)
    assert plan(6, same, 5, 0, splits=2) == (3, 2, 0), "no confirmation"
    assert plan(3, same, 1, 1, splits=2) == (2, 1, 1), "1 call each is all there is"
    assert plan(15, same, 2, 10, splits=2) == (3, 2, 9), "the calls left go to the confirmation"
    assert plan(12, same, 10, 10, splits=1) == (2, 4, 4), "4 splits of 1"
    assert plan(1, same, 10, 10, splits=1) == (0, 0, 0), "a re-score on 1 split is none"
    assert plan(2, same, 10, 10, splits=1) == (1, 2, 0)
    assert plan(5, (), 5, 5, splits=2) == (0, 0, 0), "no finalists"


def test_the_plan_counts_each_finalists_own_seconds():
    # 30 s for finalists of 4, 2 and 1 s a call: priced at the slowest (7 calls of 4 s) only
    # 2 would fit on 4 splits each; at their own seconds all 3 get 2 calls (14 s), and the
    # confirmation the 16 s left, at the slowest's 4 s a call.
    assert plan(30.0, (4.0, 2.0, 1.0), 5, 5, splits=2) == (3, 2, 4)
    # Cheap finalists behind a slow best one: it alone is kept when the rest cannot be paid.
    assert plan(10.0, (4.0, 0.5, 0.5), 5, 5, splits=2) == (1, 2, 0)
    assert plan(20.0, (4.0, 0.5, 0.5), 5, 5, splits=2) == (3, 2, 2)


def test_a_call_costs_the_mean_of_the_calls_a_trial_made_its_racing_rounds_included():
    raced = replace(done(5, 0.3, 3.0), split_losses=(0.3,) * 6, race_seconds=9.0)
    assert call_seconds(raced, 2) == pytest.approx(4.0), "12 s for 3 calls of 2 splits"
    assert call_seconds(raced, 3) == pytest.approx(6.0)
    assert call_seconds(done(6, 0.3, 3.0), 2) == 3.0
    assert call_seconds(replace(raced, seconds=None), 2) == 0.0, "unknown"


def test_the_reserve_is_the_finalists_expected_time_capped_by_the_share():
    # The finalists are trials 1, 0, 2 (by loss), 4, 2 and 1 s a call; each gets 5 calls (10
    # splits of 2): 35 s; the confirmation 5 more at the slowest's 4 s: 20 s. A typical trial
    # (the median, 3 s) is kept too.
    assert final_reserve(config(time_budget=1000), TRIALS) == pytest.approx(55.0 + 3)
    assert final_reserve(config(time_budget=100), TRIALS) == pytest.approx(25.0 + 3)
    share = config(time_budget=100, final_share=0.5)
    assert final_reserve(share, TRIALS) == pytest.approx(50.0 + 3)
    assert final_reserve(config(time_budget=1000, final_candidates=1), TRIALS) == 20.0 + 3
    assert final_reserve(config(), TRIALS) == 0.0, "no budget, nothing kept"
    assert final_reserve(config(time_budget=100), []) == 0.0
    # The split-difficulty baseline's expected seconds count inside the cap.
    with_baseline = partial(final_reserve, config(time_budget=1000), TRIALS)
    assert with_baseline(baseline_seconds=12.0) == pytest.approx(55.0 + 12 + 3)
    assert final_reserve(config(time_budget=100), TRIALS, 12.0) == pytest.approx(25.0 + 3)


def test_the_deadline_keeps_the_reserve_once_there_are_trials():
    started = time.monotonic() - 50
    deadline = Deadline(100, started, reserve=lambda trials: 40.0 if trials else 99.0)
    assert not deadline.passed() and not deadline.passed(TRIALS)
    assert Deadline(100, started, reserve=lambda _: 60.0).passed(TRIALS)
    assert not Deadline(100, started, reserve=lambda _: 60.0).passed()
    assert 49 < deadline.left() <= 50
    assert Deadline(None).left() is None
    assert not Deadline(None, reserve=lambda _: 1e9).passed(TRIALS)


def test_the_end_is_the_reserve_less_the_typical_trial():
    for search in ({"time_budget": 1000}, {"time_budget": 100}, {"time_budget": 100,
                   "final_share": 0.5}, {"time_budget": 1000, "final_candidates": 1}):  # fmt: skip
        for baseline in (0.0, 12.0):
            kept = final_reserve(config(**search), TRIALS, baseline)
            assert end_seconds(config(**search), TRIALS, baseline) == pytest.approx(kept - 3.0)
    assert end_seconds(config(), TRIALS) == 0.0, "no budget, nothing kept"
    assert end_seconds(config(time_budget=100), []) == 0.0
    assert final_reserve(config(time_budget=100, final_share=0), TRIALS) == 3.0, (
        "no time for the final: the last trial is still expected to end in the budget"
    )


def test_the_room_is_the_time_left_less_the_end():
    started = time.monotonic() - 50
    deadline = Deadline(100, started, reserve=lambda _: 40.0, end=lambda _: 30.0)
    assert 19 < deadline.room(TRIALS) <= 20
    assert deadline.room([]) is None, "no trials: the end's cost is unknown"
    assert Deadline(100, started, reserve=lambda _: 40.0).room(TRIALS) is None, "no end given"
    assert Deadline(None, end=lambda _: 30.0).room(TRIALS) is None, "no budget"
    late = Deadline(100, started, end=lambda _: 70.0)
    assert late.room(TRIALS) < 0, "past the time kept for the end: nothing fits"


def test_tuner_search_keeps_the_ends_time_from_trials_and_racing_rounds():
    from tuner.engine.api import search_deadline

    started = time.monotonic() - 50
    deadline = search_deadline(config(time_budget=100), started, baseline_seconds=2.0)
    # Kept: the final's 25 s (the share of 100 s), and a typical trial's 3 s before it.
    assert not deadline.passed(TRIALS), "50 s left, 28 kept"
    assert search_deadline(config(time_budget=100), started - 25, 2.0).passed(TRIALS)
    assert 50 - 25 - 1 < deadline.room(TRIALS) <= 50 - 25, "a round must end before the 25 s"
    # Under the cap: the final's 55 s and the baseline's 2 s are kept from the 100 s left.
    uncapped = search_deadline(config(time_budget=1000), time.monotonic() - 900, 2.0)
    assert 100 - 57 - 1 < uncapped.room(TRIALS) <= 100 - 57
    assert search_deadline(config(), started, 2.0).room(TRIALS) is None, "no time budget"


def test_a_worker_keeps_no_end_but_races_no_round_past_its_budget():
    from tuner.engine.api import worker_deadline

    deadline = worker_deadline(config(time_budget=100))
    assert not deadline.passed(TRIALS), "nothing kept: trials start until the budget is spent"
    assert 99 < deadline.room(TRIALS) <= 100, "a round must end within the budget"
    assert worker_deadline(config()).room(TRIALS) is None


def test_the_final_is_kept_whole_when_it_fits_and_cut_when_not():
    whole = config(time_budget=600)
    assert fit_final(whole, TRIALS, 55.0) is whole
    assert fit_final(whole, TRIALS, None) is whole
    cut = fit_final(whole, TRIALS, 30.0).search  # 3 finalists of 4, 2, 1 s: 2 calls each
    assert (cut.final_candidates, cut.final_splits, cut.confirm_splits) == (3, 4, 8)
    assert (cut.race_top, cut.time_budget) == (whole.search.race_top, 600)
    # The split-difficulty baseline runs after them: its seconds are kept out of the cut.
    assert fit_final(whole, TRIALS, 55.0 + 5.0, baseline_seconds=5.0) is whole
    kept = fit_final(whole, TRIALS, 55.0, baseline_seconds=5.0).search
    assert (kept.final_candidates, kept.final_splits, kept.confirm_splits) == (3, 8, 10)
    none = fit_final(whole, TRIALS, 3.0).search
    assert none.final_candidates == 0
    line = describe_cut(whole.search, cut, 30.0)
    assert line.startswith("time budget: 30 s left, the final re-score cut to 3 finalist(s) on 4")
    assert "confirmation on 8" in line and "configured: 3 on 10, confirmation 10" in line
    assert "search.final_share" in line
    assert "too little to re-score" in describe_cut(whole.search, none, 3.0)
    unconfirmed = config(time_budget=600, confirm_splits=0)
    line = describe_cut(unconfirmed.search, fit_final(unconfirmed, TRIALS, 30.0).search, 30.0)
    assert "confirmation on" not in line


def test_a_resumed_search_keeps_the_rescores_it_holds(tmp_path):
    """Finalists re-scored on the configured splits cost nothing and are never cut away."""
    whole = config(time_budget=600)
    storage = Storage(sqlite_url(tmp_path / "study.db"))
    try:
        study = open_study(storage, "s", whole, resume=False)
        for t in TRIALS:
            new = NewTrial(t.point, t.params, seed=100 * t.number)
            asked = storage.ask(study, lambda _, new=new: new, 60).trial
            storage.finish_trial(
                asked, state=TrialState.COMPLETE, loss=t.loss, split_losses=[t.loss] * 2,
                seconds=t.seconds,
            )  # fmt: skip
        trials = storage.trials(study)
        assert pending(whole, trials).seconds == 55.0
        seeds = final_seeds(whole, trials)
        for trial in candidates(trials, 3):
            score = FinalScore(tuple(seeds), 10, trial.loss, 0.01, (trial.loss,) * 10)
            storage.record_final(trial, score)
        trials = storage.trials(study)
        assert (pending(whole, trials).undone, pending(whole, trials).confirm) == ((), 5)
        assert fit_final(whole, trials, 1.0) is whole
        assert final_reserve(whole, trials) == pytest.approx(5 * 4.0 + 3.0)
    finally:
        storage.close()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_time_budget_covers_the_final_rescore(workers, write_config, tmp_path, monkeypatch):
    """0.4 s trials and a 6 s budget: without the reserve and the cut the final re-score
    (3 finalists and the confirmation, 5 calls each) would add 8 s after the budget, and
    without the reserve alone there would be no time left for it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_SLEEP", "0.4")
    search = {"init_points": 5, "n_iter": 35, "seed": 1, "race_top": 0, "final_share": 0.4}
    search["difficulty_splits"] = 0  # its baseline's share of the time is tested apart
    path = write_config(search=search)
    args = ["search", str(path), "--time-budget", "6s", "--workers", workers, "--json"]
    started = time.monotonic()
    result = CliRunner().invoke(cli, [*args, "--objective", "tests.objectives:timed_bowl"])
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "time budget: " in result.stderr and "search.final_share" in result.stderr
    reported = json.loads(result.stdout)
    # 2.4 s were kept, and at least 2 s were left: 5 calls, the best finalist alone.
    assert reported["final_splits"] > 0, f"time was kept for the final: {result.stderr[-1500:]}"
    assert reported["final_candidates"] < 3 or reported["final_splits"] < 10
    # Without the reserve and the cut the end would come about 14 s in (11.6 s with the
    # reserve but no cut: trials stop at 3.2 s, the whole final takes 8 s after the last); the
    # slack is for a loaded machine, where the optimiser's own seconds stretch (6 + 2.5 failed
    # once under a load of 5 on 2 cores).
    assert seconds < 6 + 4, "the budget and some slack"

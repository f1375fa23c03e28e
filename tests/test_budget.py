"""The end of a search keeps to its share of the run: kept from a time budget, sized from the
trials' time without one, cut to what fits (engine/budget.py)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from click.testing import CliRunner

from tuner.cli.commands import cli
from tuner.config.schema import validate_config
from tuner.engine.budget import (
    Deadline,
    call_seconds,
    describe_end,
    end_room,
    final_reserve,
    fit_final,
    pending,
    plan,
    planned_end,
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
    [(20, (3, 5, 5)), (19, (3, 4, 5)), (8, (3, 2, 2)), (7, (2, 2, 3)), (5, (1, 0, 5)),
     (3, (1, 0, 3)), (2, (1, 0, 2)), (1, (1, 1, 0)), (0, (0, 0, 0))],
)  # fmt: skip
def test_the_plan_drops_finalists_before_going_under_four_splits_each(calls, expected):
    # One finalist left: its re-score would choose nothing, so every call goes to its
    # confirmation (an ensemble, a call an outer split); under 2 calls of that it is
    # re-scored instead, its loss would have no standard error.
    assert plan(calls * 2.0, (2.0, 2.0, 2.0), 5, 5, splits=2) == expected


def test_the_plan_in_other_shapes():
    same = (1.0, 1.0, 1.0)
    assert plan(6, same, 5, 0, splits=2) == (3, 2, 0), "no confirmation"
    assert plan(3, same, 1, 1, splits=2) == (2, 1, 1), "1 call each is all there is"
    assert plan(15, same, 2, 10, splits=2) == (3, 2, 9), "the calls left go to the confirmation"
    assert plan(12, same, 10, 10, splits=1) == (2, 4, 4), "4 splits of 1"
    assert plan(1, same, 10, 10, splits=1) == (0, 0, 0), "a re-score on 1 split is none"
    assert plan(2, same, 10, 10, splits=1) == (1, 0, 2)
    assert plan(4, same, 10, 10, splits=1) == (1, 0, 4)
    assert plan(2, same, 10, 0, splits=1) == (1, 2, 0), "no confirmation: re-scored"
    assert plan(5, (), 5, 5, splits=2) == (0, 0, 0), "no finalists"


def test_a_lone_finalist_is_confirmed_not_rescored():
    # Its re-score would choose nothing: the calls go to the confirmation, up to all of it.
    assert plan(100.0, (3.0,), 5, 4, splits=3) == (1, 0, 4)
    assert plan(9.0, (3.0,), 5, 4, splits=3) == (1, 0, 3)
    assert plan(6.0, (3.0,), 5, 4, splits=3) == (1, 0, 2), "MIN_CONFIRM calls"
    assert plan(5.9, (3.0,), 5, 4, splits=3) == (1, 1, 0), "else re-scored, as before"
    assert plan(3.0, (3.0,), 5, 1, splits=3) == (1, 0, 1), "1 call is all that is wanted"
    assert plan(2.9, (3.0,), 5, 4, splits=3) == (0, 0, 0), "nothing fits"


def test_the_plan_counts_each_finalists_own_seconds():
    # 30 s for finalists of 4, 2 and 1 s a call: priced at the slowest (7 calls of 4 s) only
    # 2 would fit on 4 splits each; at their own seconds all 3 get 2 calls (14 s), and the
    # confirmation the 16 s left, at the slowest's 4 s a call.
    assert plan(30.0, (4.0, 2.0, 1.0), 5, 5, splits=2) == (3, 2, 4)
    # Cheap finalists behind a slow best one: it alone is kept when the rest cannot be paid,
    # and confirmed on as many calls as fit.
    assert plan(7.0, (4.0, 0.5, 0.5), 5, 5, splits=2) == (1, 1, 0)
    assert plan(10.0, (4.0, 0.5, 0.5), 5, 5, splits=2) == (1, 0, 2)
    assert plan(12.0, (4.0, 0.5, 0.5), 5, 5, splits=2) == (1, 0, 3)
    assert plan(20.0, (4.0, 0.5, 0.5), 5, 5, splits=2) == (3, 2, 2)


def test_a_call_costs_its_trials_seconds_per_split():
    assert call_seconds(done(6, 0.3, 3.0), 2) == 3.0
    assert call_seconds(done(6, 0.3, 3.0), 4) == 6.0
    assert call_seconds(replace(done(6, 0.3, 3.0), seconds=None), 2) == 0.0, "unknown"


def test_the_reserve_is_the_finalists_expected_time_capped_by_the_share():
    # The finalists are trials 1, 0, 2 (by loss), 4, 2 and 1 s a call; each gets 5 calls (10
    # splits of 2): 35 s; the confirmation 10 calls (an outer split of 2 networks each) at the
    # slowest's 4 s: 40 s. A typical trial (the median, 3 s) is kept too.
    assert final_reserve(config(time_budget=1000), TRIALS) == pytest.approx(75.0 + 3)
    assert final_reserve(config(time_budget=100), TRIALS) == pytest.approx(20.0 + 3)
    share = config(time_budget=100, final_share=0.5)
    assert final_reserve(share, TRIALS) == pytest.approx(50.0 + 3)
    lone = config(time_budget=1000, final_candidates=1)  # confirmed only: 10 calls of 4 s
    assert final_reserve(lone, TRIALS) == 40.0 + 3
    assert final_reserve(config(), TRIALS) == 0.0, "no budget, nothing kept"
    assert final_reserve(config(time_budget=100), []) == 0.0
    assert final_reserve(config(time_budget=100, final_share=0), TRIALS) == 3.0, (
        "no time for the end: the last trial is still expected to end in the budget"
    )


def test_the_deadline_keeps_the_reserve_once_there_are_trials():
    started = time.monotonic() - 50
    deadline = Deadline(100, started, reserve=lambda trials: 40.0 if trials else 99.0)
    assert not deadline.passed() and not deadline.passed(TRIALS)
    assert Deadline(100, started, reserve=lambda _: 60.0).passed(TRIALS)
    assert not Deadline(100, started, reserve=lambda _: 60.0).passed()
    assert 49 < deadline.left() <= 50
    assert Deadline(None).left() is None
    assert not Deadline(None, reserve=lambda _: 1e9).passed(TRIALS)


def test_the_ends_room_is_the_budgets_rest_or_its_share_of_the_run():
    started = time.monotonic() - 80
    assert 19 < end_room(config(time_budget=100), Deadline(100, started)) <= 20
    # Without a budget: 0.2 of the run once the end is added, a quarter of the 80 s so far.
    assert 20 <= end_room(config(), Deadline(None, started)) < 21
    assert 80 <= end_room(config(final_share=0.5), Deadline(None, started)) < 81


def test_the_end_is_kept_whole_when_it_fits_and_cut_when_not():
    whole = config(time_budget=600)
    assert fit_final(whole, TRIALS, 75.0) is whole
    cut = fit_final(whole, TRIALS, 30.0).search  # 3 finalists of 4, 2, 1 s: 2 calls each
    assert (cut.final_candidates, cut.final_splits, cut.confirm_splits) == (3, 4, 4)
    assert cut.time_budget == 600
    assert fit_final(whole, TRIALS, 3.0).search.final_candidates == 0, "nothing fits"
    alone = fit_final(whole, TRIALS, 10.0).search  # 4 s a call: the best one alone, 2 calls
    assert (alone.final_candidates, alone.final_splits, alone.confirm_splits) == (1, 0, 2)
    starved = fit_final(whole, TRIALS, 6.0).search  # 1 call: re-scored, not confirmed
    assert (starved.final_candidates, starved.final_splits, starved.confirm_splits) == (1, 2, 0)


def test_a_lone_finalist_costs_its_confirmation_only():
    one = config(time_budget=1000, final_candidates=1)  # trial 1, 4 s a call
    todo = pending(one, TRIALS)
    assert todo.alone and todo.confirm == 10 and todo.seconds == 40.0
    assert final_reserve(one, TRIALS) == 40.0 + 3
    whole = fit_final(one, TRIALS, 100.0).search  # it fits, yet is not re-scored
    assert (whole.final_candidates, whole.final_splits, whole.confirm_splits) == (1, 0, 10)
    cut = fit_final(one, TRIALS, 20.0).search
    assert (cut.final_candidates, cut.final_splits, cut.confirm_splits) == (1, 0, 5)
    off = config(time_budget=1000, final_candidates=1, confirm_splits=0)
    assert not pending(off, TRIALS).alone, "no confirmation: its re-score is its loss"


def test_the_plan_said_at_the_start_fits_the_share_of_a_trial_budget():
    # 15 trials of one call each: the end may take 3.75 calls (20% of the run), so the best
    # trial alone, not re-scored (that would choose nothing): its ensemble confirmed in 3 calls.
    default = config(init_points=5, n_iter=10)
    planned = planned_end(default).search
    assert (planned.final_candidates, planned.final_splits, planned.confirm_splits) == (1, 0, 3)
    assert describe_end(default) == (
        "end: the best trial confirmed as exported (an ensemble of 2 networks) on 3 fresh "
        "splits; at most 20% of the run"
    )
    short = config(init_points=3, n_iter=3)  # 1.5 calls: too few to confirm, re-scored
    assert describe_end(short) == "end: 1 finalist(s) re-scored on fresh splits (2 each); " + (
        "at most 20% of the run"
    )
    # 30 trials: 7.5 calls, 2 finalists on 4 splits (4 calls) and the winner confirmed on 3.
    course = planned_end(config(init_points=10, n_iter=20)).search
    assert (course.final_candidates, course.final_splits, course.confirm_splits) == (2, 4, 3)
    assert "networks) confirmed on 3 more" in describe_end(config(init_points=10, n_iter=20))
    single = validate_config({"data": NO_DATA, "space": BOWL_SPACE, "evaluation": {"splits": 1}})
    assert "the best trial confirmed as exported (a network) on 7" in describe_end(single)
    budget = config(time_budget=600)
    assert planned_end(budget) is budget, "with a time budget, cut at the end to the time left"
    assert describe_end(budget).startswith("end: up to 3 finalist(s)")
    assert describe_end(config(time_budget=600, final_candidates=1)) == (
        "end: the best trial confirmed as exported (an ensemble of 2 networks) on up to 10 "
        "fresh splits; at most 20% of the run"
    )
    assert "no re-score" in describe_end(config(final_candidates=0))


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
        assert pending(whole, trials).seconds == 75.0
        seeds = final_seeds(whole, trials)
        for trial in candidates(trials, 3):
            score = FinalScore(tuple(seeds), 10, trial.loss, 0.01, (trial.loss,) * 10)
            storage.record_final(trial, score)
        trials = storage.trials(study)
        assert (pending(whole, trials).undone, pending(whole, trials).confirm) == ((), 10)
        assert fit_final(whole, trials, 1.0) is whole
        assert final_reserve(whole, trials) == pytest.approx(10 * 4.0 + 3.0)
    finally:
        storage.close()


def end_calls(found: dict) -> int:
    """Scoring calls the end of a search made, from its --json: the finalists' of 2 splits, the
    confirmation's of one outer split of 2 networks, each about a trial's cost."""
    return found["final_candidates"] * found["final_splits"] // 2 + found["confirm_splits"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_time_budget_keeps_its_share_for_the_end(workers, write_config, tmp_path, monkeypatch):
    """0.4 s calls and a 10 s budget with final_share 0.4: trials stop early enough that the
    end has its time, and the end is cut to the calls that fit in 4 s (bounded in calls, not
    seconds: a loaded machine stretches every step)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_SLEEP", "0.4")
    search = {"init_points": 5, "n_iter": 35, "seed": 1, "final_share": 0.4}
    search |= {"final_candidates": 3, "final_splits": 10, "confirm_splits": 10}
    path = write_config(search=search)
    args = ["search", str(path), "--time-budget", "10s", "--workers", workers, "--json"]
    result = CliRunner().invoke(cli, [*args, "--objective", "tests.objectives:timed_bowl"])
    assert result.exit_code == 0, result.output
    assert "end: up to 3 finalist(s)" in result.stderr
    found = json.loads(result.stdout)
    trials = json.loads(CliRunner().invoke(cli, ["trials", str(path), "--json"]).stdout)
    assert len(trials["trials"]) < 40, "the time budget ended the trials"
    # A re-score, or a lone finalist's confirmation alone.
    kept = found["final_splits"] > 0 or found["confirm_splits"] > 0
    assert kept, f"time was kept for the end: {result.stderr[-1500:]}"
    assert 1 <= end_calls(found) <= 10, "cut to what fits in 0.4 of 10 s at 0.4 s a call"


def test_without_a_time_budget_the_end_takes_its_share_of_the_run(
    write_config, tmp_path, monkeypatch
):
    """12 trials of 0.3 s: the end gets a quarter of the run so far (0.2 of the whole), cut to
    its calls at the trials' own seconds."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_SLEEP", "0.3")
    search = {"init_points": 4, "n_iter": 8, "seed": 1, "final_share": 0.2}
    search |= {"final_candidates": 3, "final_splits": 10, "confirm_splits": 10}
    path = write_config(search=search)
    args = ["search", str(path), "--json", "--objective", "tests.objectives:timed_bowl"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    before_end = found["run_seconds"] - found["end_seconds"]
    assert found["final_candidates"] >= 1
    assert end_calls(found) * 0.3 <= 0.25 * before_end, "the calls planned fit the share"

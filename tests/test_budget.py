"""The time budget keeps time for the final re-score and cuts it to what is left (budget.py)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from tuner.budget import Deadline, describe_cut, final_reserve, fit_final, plan
from tuner.cli import cli
from tuner.config import validate_config
from tuner.store import TrialRecord, TrialState

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
    [(20, (3, 5)), (19, (3, 4)), (8, (3, 2)), (7, (2, 2)), (5, (1, 5)), (1, (1, 1)), (0, (0, 0))],
)
def test_the_plan_drops_finalists_before_going_under_two_calls_each(calls, expected):
    assert plan(calls, 3, 5, confirm=True) == expected


def test_the_plan_without_confirmation_and_with_one_call_each():
    assert plan(6, 3, 5, confirm=False) == (3, 2)
    assert plan(3, 3, 1, confirm=True) == (2, 1)  # 1 call each is all there is to cut to


def test_the_reserve_is_the_finalists_expected_time_capped_by_the_share():
    # The finalists are trials 1, 0, 2 (by loss); the slowest of them took 4 s a call; each
    # gets 5 calls (10 splits of 2) and the confirmation 5 more: 20 calls.
    assert final_reserve(config(time_budget=1000), TRIALS) == pytest.approx(80.0)
    assert final_reserve(config(time_budget=100), TRIALS) == pytest.approx(25.0)  # 0.25 of it
    assert final_reserve(config(time_budget=100, final_share=0.5), TRIALS) == pytest.approx(50.0)
    assert final_reserve(config(time_budget=1000, final_candidates=1), TRIALS) == 20.0
    assert final_reserve(config(), TRIALS) == 0.0, "no budget, nothing kept"
    assert final_reserve(config(time_budget=100), []) == 0.0


def test_the_deadline_keeps_the_reserve_once_there_are_trials():
    started = time.monotonic() - 50
    deadline = Deadline(100, started, reserve=lambda trials: 40.0 if trials else 99.0)
    assert not deadline.passed() and not deadline.passed(TRIALS)
    assert Deadline(100, started, reserve=lambda _: 60.0).passed(TRIALS)
    assert not Deadline(100, started, reserve=lambda _: 60.0).passed()
    assert 49 < deadline.left() <= 50
    assert Deadline(None).left() is None
    assert not Deadline(None, reserve=lambda _: 1e9).passed(TRIALS)


def test_the_final_is_kept_whole_when_it_fits_and_cut_when_not():
    whole = config(time_budget=600)
    assert fit_final(whole, TRIALS, 80.0) is whole
    assert fit_final(whole, TRIALS, None) is whole
    cut = fit_final(whole, TRIALS, 30.0).search  # 7 calls of 4 s: 2 finalists, 2 calls each
    assert (cut.final_candidates, cut.final_splits, cut.confirm_splits) == (2, 4, 4)
    assert (cut.race_top, cut.time_budget) == (whole.search.race_top, 600)
    none = fit_final(whole, TRIALS, 3.0).search
    assert none.final_candidates == 0
    line = describe_cut(whole.search, cut, 30.0)
    assert line.startswith("time budget: 30 s left, the final re-score cut to 2 finalist(s) on 4")
    assert "confirmation on 4" in line and "configured: 3 on 10, confirmation 10" in line
    assert "too little to re-score" in describe_cut(whole.search, none, 3.0)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_time_budget_covers_the_final_rescore(workers, write_config, tmp_path, monkeypatch):
    """0.4 s trials and a 4 s budget: without the reserve and the cut the final re-score
    (3 finalists and the confirmation, 5 calls each) would add 8 s after the budget."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_SLEEP", "0.4")
    path = write_config(search={"init_points": 5, "n_iter": 35, "seed": 1})
    args = ["search", str(path), "--time-budget", "4s", "--workers", workers, "--json"]
    started = time.monotonic()
    result = CliRunner().invoke(cli, [*args, "--objective", "tests.objectives:timed_bowl"])
    seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "time budget: " in result.stderr and "search.final_share" in result.stderr
    reported = json.loads(result.stdout)
    assert reported["final_candidates"] < 3 or reported["final_splits"] < 10
    assert seconds < 4 + 0.4 + 2.5, "the budget, the trial running at its end and some slack"

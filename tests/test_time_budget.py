"""`search.time_budget` / `--time-budget`: no trial starts once the time is spent."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

import tuner.training.data  # noqa: F401  (imported here, so the search's clock does not time its import)
from tuner.cli.commands import cli
from tuner.config.duration import parse_duration
from tuner.config.schema import validate_config
from tuner.engine.budget import Deadline
from tuner.engine.loop import open_study, run_search
from tuner.errors import ConfigError
from tuner.outputs.progress import QuietReporter
from tuner.study.store import Storage, TrialState, sqlite_url
from tuner.training.evaluate import Score

from .conftest import BOWL_SPACE, NO_DATA

RAW = {
    "data": NO_DATA,
    "space": BOWL_SPACE,
    "search": {"init_points": 5, "n_iter": 35, "seed": 5},
}


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(90, 90.0), (2.5, 2.5), ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0),
     ("1h30m", 5400.0), (" 1.5 m ", 90.0)],
)  # fmt: skip
def test_durations(given, seconds):
    assert parse_duration(given) == seconds
    raw = {**RAW, "search": {**RAW["search"], "time_budget": given}}
    assert validate_config(raw).search.time_budget == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [("soon", "not a duration (got 'soon')"), ("10x", "not a duration (got '10x')"),
     (0, "must be more than 0 seconds (got 0)"), (True, "not a duration (got True)"),
     ("1 2", "not a duration (got '1 2')")],
)  # fmt: skip
def test_bad_durations_name_the_key(given, message):
    raw = {**RAW, "search": {**RAW["search"], "time_budget": given}}
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    assert str(caught.value) == (
        f"search.time_budget: {message}; give seconds or a duration such as 90s, 10m, 2h or 1h30m"
    )


def test_no_time_budget_by_default():
    assert validate_config(RAW).search.time_budget is None
    assert not Deadline(None).passed()


def slow_bowl(params, _seed):
    time.sleep(0.3)
    loss = (params["dropout"] - 0.2) ** 2
    return Score(loss=loss, loss_std=0.0, split_losses=(loss, loss), epochs=(1, 1), seconds=0.3)


def test_the_loop_starts_no_trial_after_the_deadline(tmp_path):
    config = validate_config(RAW)
    storage = Storage(sqlite_url(tmp_path / "study.db"))
    try:
        study = open_study(storage, "s", config, resume=False)
        # Passes once 3 trials exist: the loop's rule without a clock (a reserve that grows).
        deadline = Deadline(3600.0, reserve=lambda trials: 1e9 if len(trials) >= 3 else 0.0)
        result = run_search(config, storage, study, slow_bowl, QuietReporter(), deadline)
    finally:
        storage.close()
    assert result.time_up
    assert len(result.trials) == 3 < config.search.budget, "none started once it had passed"
    assert all(t.state == TrialState.COMPLETE for t in result.trials), "the last one finished"
    full = validate_config({**RAW, "search": {**RAW["search"], "init_points": 2, "n_iter": 1}})
    storage = Storage(sqlite_url(tmp_path / "other.db"))
    try:
        study = open_study(storage, "s", full, resume=False)
        result = run_search(full, storage, study, slow_bowl, QuietReporter(), Deadline(60.0))
    finally:
        storage.close()
    assert not result.time_up and len(result.trials) == 3


def _started(db: Path) -> list[tuple[str, datetime]]:
    with sqlite3.connect(db) as connection:
        found = connection.execute("select state, started_at from trials").fetchall()
    return [(state, datetime.fromisoformat(at).replace(tzinfo=UTC)) for state, at in found]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_time_budget_ends_the_search_early_and_cleanly(
    workers, write_config, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_SLEEP", "0.5")
    config = write_config(search={"init_points": 5, "n_iter": 35, "seed": 1})
    args = ["search", str(config), "--time-budget", "2s", "--workers", workers, "--json"]
    result = CliRunner().invoke(cli, [*args, "--objective", "tests.objectives:bowl"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loss"] >= 0
    assert "time budget of 2 s (search.time_budget) ended the search" in result.stderr
    trials = _started(tmp_path / "runs" / "tiny" / "study.db")
    # 0.5 s trials in 2 s: at most 4 a worker and the one running at the end (a loaded machine
    # runs fewer, never more).
    assert 1 <= len(trials) <= 5 * int(workers)
    assert all(state == "complete" for state, _ in trials), "none left running"


def test_bad_time_budget_option_is_one_line_exit_2(write_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["search", str(write_config()), "--time-budget", "soon"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --time-budget: not a duration (got 'soon'); give seconds or a duration such as "
        "90s, 10m, 2h or 1h30m\n"
    )
    assert not (tmp_path / "runs").exists()

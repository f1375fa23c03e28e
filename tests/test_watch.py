"""Watching a search: the time left, the end's progress, a long trial's epochs, `--events`, and
stderr free of the frameworks' start-up lines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from tuner.cli.commands import cli
from tuner.outputs.progress import ConsoleReporter, format_duration
from tuner.study.store import Storage, TrialRecord, TrialState, sqlite_url

from .conftest import BOWL_SPACE

NATIVE = ("absl", "cudart", "oneDNN", "cuInit", "I0000", "E0000", "W0000", "cpu_feature_guard")
ORDER = [
    "search_started",
    "trial",  # trial_started, epoch, trial_finished, per trial
    "final_started",
    "final_scored",
    "confirm_started",
    "confirm_scored",
    "done",
]


@pytest.fixture
def run(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNER_TEST_SLEEP", "0.6")  # an end long enough to show its eta

    def invoke(*args: str):
        return CliRunner().invoke(cli, [str(a) for a in args])

    return invoke


@pytest.fixture
def bowl_config(write_config):
    """The tiny config over the bowl's space: 5 trials, 2 finalists, a confirmation."""
    return write_config("bowl", space=BOWL_SPACE, search={"init_points": 3, "n_iter": 2})


def read_events(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert all({"event", "time"} <= set(e) for e in events)
    return events


def check_order(events: list[dict]) -> None:
    """Phases never go back; each trial starts once, hears epochs only while it runs, ends once."""
    phase, running, ended = 0, set(), set()
    for event in events:
        name = event["event"]
        step = 1 if name in ("trial_started", "epoch", "trial_finished") else ORDER.index(name)
        assert step >= phase, f"{name} after {ORDER[phase]}"
        phase = step
        number = event.get("trial")
        if name == "trial_started":
            assert number not in running and number not in ended
            running.add(number)
        elif name == "epoch":
            assert number in running and event["epoch"] >= 1
        elif name == "trial_finished":
            running.remove(number)
            ended.add(number)
    assert events[0]["event"] == "search_started" and events[-1]["event"] == "done"
    assert not running, "every started trial ended"


def study_trials(db: Path, name: str) -> list[TrialRecord]:
    storage = Storage(sqlite_url(db))
    try:
        return storage.trials(storage.get_study(name))
    finally:
        storage.close()


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 45, 190, 3600 + 5 * 60 + 20)] == [
        "0s",
        "45s",
        "3m10s",
        "1h05m",
    ]


def test_events_follow_a_search_and_the_lines_show_the_time_left(run, bowl_config, tmp_path):
    events_file = tmp_path / "watch" / "events.jsonl"
    events_file.parent.mkdir()
    objective = ("--objective", "tests.objectives:timed_bowl")
    result = run("search", bowl_config, "--events", events_file, *objective)
    assert result.exit_code == 0, result.output
    events = read_events(events_file)
    check_order(events)
    trials = study_trials(tmp_path / "runs" / "bowl" / "study.db", "bowl")
    finished = [e for e in events if e["event"] == "trial_finished"]
    assert [e["trial"] for e in finished] == [t.number for t in trials]
    assert [e["loss"] for e in finished] == [t.loss for t in trials]
    assert all(e["state"] == "complete" and e["eta_seconds"] >= 0 for e in finished)
    assert finished[-1]["eta_seconds"] < finished[0]["eta_seconds"], "4 trials fewer to run"
    finals = [e for e in events if e["event"] == "final_scored"]
    assert {e["trial"] for e in finals} == {t.number for t in trials if t.final is not None}
    done = events[-1]
    assert done["ok"] and f"winner: #{done['winner']['trial']}: " in result.stderr
    confirmed = [e for e in events if e["event"] == "confirm_scored"]
    assert [e["trial"] for e in confirmed] == [done["winner"]["trial"]]
    assert confirmed[0]["loss"] == done["winner"]["loss"]

    # stderr is not a terminal here: the time left is in the trial lines and the end's lines.
    lines = result.stderr.splitlines()
    assert any(line.startswith("trial   0") and "  eta " in line for line in lines)
    assert any(line.startswith("re-scoring the best 2") and "  eta " in line for line in lines)

    # A resumed search appends; --quiet and --json keep the events.
    more = run(
        "search", bowl_config, "--resume", "--set", "search.n_iter=3", "--quiet", "--json",
        "--events", events_file, *objective,
    )  # fmt: skip
    assert more.exit_code == 0, more.output
    assert more.stderr == "" and json.loads(more.stdout)["trial"] >= 0
    again = read_events(events_file)
    assert again[: len(events)] == events
    check_order(again[len(events) :])
    assert [e["trial"] for e in again[len(events) :] if e["event"] == "trial_started"] == [5]


def test_a_bad_events_path_is_refused_before_any_trial(run, bowl_config, tmp_path):
    objective = ("--objective", "tests.objectives:bowl")
    for bad in (tmp_path, tmp_path / "missing" / "events.jsonl"):
        result = run("search", bowl_config, "--events", bad, *objective)
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: --events: ")
    assert not (tmp_path / "runs").exists()


def test_a_failing_search_ends_its_events_with_the_error(run, write_config, tmp_path):
    config = write_config("bad", search={"init_points": "many"})
    result = run("search", config, "--events", tmp_path / "e.jsonl")
    assert result.exit_code == 2 and not (tmp_path / "e.jsonl").exists(), "the config first"
    config = write_config("nodata", data={"target": "nope"})
    result = run("search", config, "--events", tmp_path / "e.jsonl")
    assert result.exit_code == 2
    [done] = read_events(tmp_path / "e.jsonl")
    assert done["event"] == "done" and "data.target" in done["error"]
    config = write_config("fails", space=BOWL_SPACE, search={"max_consecutive_failures": 2})
    crashing = ("--set", "space.dropout.low=0.05", "--set", "space.dropout.high=0.1")
    objective = ("--objective", "tests.objectives:misbehaving")
    result = run("search", config, "--events", tmp_path / "f.jsonl", *objective, *crashing)
    assert result.exit_code == 1, result.output
    events = read_events(tmp_path / "f.jsonl")
    assert [e["state"] for e in events if e["event"] == "trial_finished"] == ["failed"] * 2
    assert events[-1]["event"] == "done" and not events[-1]["ok"]
    assert "failed in a row" in events[-1]["error"]


def _record(number: int, seconds: float = 1.0) -> TrialRecord:
    params = {"dropout": 0.1, "learning_rate": 0.01}
    return TrialRecord(
        number, TrialState.COMPLETE, {}, params, seed=number, loss=0.5, loss_std=0.01,
        split_losses=(0.5, 0.5), epochs=(3, 3), seconds=seconds,
    )  # fmt: skip


def test_the_bar_shows_a_long_trials_epoch_and_the_time_left():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, highlight=False, no_color=True)
    reporter = ConsoleReporter(console, ["dropout"], long_trial=0.0)
    reporter.search_started("s", 4, 0, 0, "end: ...")
    reporter.trial_started(_record(0))
    reporter.trial_progress(_record(0), 7, 0.5)
    reporter.eta_changed(190.0)
    reporter.trial_finished(_record(0), _record(0))
    reporter.search_finished([_record(0)])
    shown = out.getvalue()
    assert "trial 0 epoch 7 loss 0.5000" in shown
    assert "eta 3m" in shown
    assert "  eta " not in next(line for line in shown.splitlines() if "best 0.5000" in line)

    # Several slots: each slot's trial, with its epoch.
    out.truncate(0)
    reporter.search_started("s", 4, 1, 0, "end: ...")
    reporter.trial_started(_record(1))
    reporter.slots_changed({"w0": 1, "w1": None})
    reporter.trial_progress(_record(1), 3, 0.25)
    reporter.search_finished([_record(0)])
    assert "w0: #1 epoch 3 loss 0.2500  w1: -" in out.getvalue()


def test_the_debug_flag_does_not_stay_in_the_environment(run, monkeypatch):
    monkeypatch.delenv("TUNER_DEBUG", raising=False)
    result = run("trials", "--storage", "sqlite:///nowhere.db", "--study", "x", "--debug")
    assert result.exit_code != 0
    assert "TUNER_DEBUG" not in os.environ


def _tuner(args: list[str], cwd: Path, stderr: Path) -> None:
    """`tuner ARGS` in a real process with stderr a file, as under nohup."""
    env = {k: v for k, v in os.environ.items() if k != "TUNER_DEBUG"}
    command = [sys.executable, "-m", "tuner.cli.commands", *args]
    with stderr.open("w") as handle:
        done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=handle, env=env,
                              timeout=600, check=False)  # fmt: skip
    assert done.returncode == 0, stderr.read_text()


def test_a_real_search_under_nohup_then_export_and_predict(write_config, tmp_path, tiny_csv):
    """Two slots in threads training real networks: epochs reach the events, and stderr (a
    file) has the time left and the end's lines but no framework start-up line."""
    config = write_config("real", evaluation={"epochs": 8, "patience": 8})
    events_file = tmp_path / "events.jsonl"
    err = tmp_path / "search.err"
    args = ["search", str(config), "--workers", "2", "--events", str(events_file)]
    _tuner(args, tmp_path, err)
    events = read_events(events_file)
    check_order(events)
    assert [e for e in events if e["event"] == "epoch"], "the trainer's epochs come through"
    trials = study_trials(tmp_path / "runs" / "real" / "study.db", "real")
    finished = {e["trial"] for e in events if e["event"] == "trial_finished"}
    assert finished == {t.number for t in trials}
    text = err.read_text()
    assert "  eta " in text and "re-scoring the best" in text and "winner: #" in text
    assert not [line for line in text.splitlines() if any(n in line for n in NATIVE)], text

    _tuner(["export", str(config), "--out", "model"], tmp_path, err)
    assert not [line for line in err.read_text().splitlines() if any(n in line for n in NATIVE)]
    assert (tmp_path / "model" / "model.keras").exists()
    _tuner(["predict", "model", str(tiny_csv), "--out", "p.csv"], tmp_path, err)
    assert not [line for line in err.read_text().splitlines() if any(n in line for n in NATIVE)]
    assert (tmp_path / "p.csv").exists()

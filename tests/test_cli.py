"""The `tuner` command through click's CliRunner (and a subprocess for signals)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tuner import __version__
from tuner.cli.commands import cli
from tuner.config.schema import load_config
from tuner.engine.loop import open_study
from tuner.study.store import Storage, TrialState, sqlite_url

from .conftest import ROOT, tree_digest


@pytest.fixture
def run(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str):
        return CliRunner().invoke(cli, [str(a) for a in args])

    return invoke


# Tests of options and bad input need a study on disk, not training: no framework to start.
CHEAP = "tests.objectives:bowl"


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute(sql).fetchall()


def test_version_and_help(run):
    assert run("--version").output.strip() == f"tuner, version {__version__}"
    for args in (["--help"], ["search", "--help"], ["evaluate", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage: tuner" in result.output
    assert "--resume" in run("search", "--help").output
    assert "--vector" in run("evaluate", "--help").output


def test_help_is_fast_without_tensorflow():
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "tuner.cli.commands", "search", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--storage" in out.stdout
    # Not a timing target (shared machines are noisy), only a guard against importing TensorFlow.
    assert time.perf_counter() - started < 10


BAD_CONFIGS = [
    (
        {"evaluation": {"splits": 0}},
        "evaluation.splits: input should be greater than or equal to 1 (got 0); raise the value",
    ),
    (
        {"space": {"dropout": {"low": 0.5, "high": 0.1}}},
        "space.dropout: high must be greater than low (got low=0.5, high=0.1); swap or widen them",
    ),
    (
        {"data": {"target": "nope"}},
        "data.target: column 'nope' is not in the data; columns: id, x1, x2, colour, label",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD_CONFIGS)
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    run, write_config, tmp_path, change, message
):
    path = write_config("first")
    # The study on disk comes from a cheap objective: what is checked is that a bad config
    # leaves it alone.
    made = run("search", path, "-q", "--objective", CHEAP, "--set", "search.n_iter=0")
    assert made.exit_code == 0, made.output
    raw = yaml.safe_load(path.read_text())
    for section, values in change.items():
        raw[section] = {**raw[section], **values}
    bad = write_config("first", raw=raw)
    before = tree_digest(tmp_path)
    result = run("search", bad, "--resume")
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert result.stdout == ""
    assert tree_digest(tmp_path) == before


def test_malformed_yaml_and_missing_file(run, tmp_path):
    (tmp_path / "broken.yaml").write_text("data: {path: x\n")
    result = run("search", "broken.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: broken.yaml: not valid YAML at line 2")
    assert result.stderr.count("\n") == 1
    missing = run("evaluate", "nope.yaml", "--vector", "1")
    assert (
        missing.exit_code == 2
        and missing.stderr == "error: nope.yaml: file not found; check the path\n"
    )
    assert not (tmp_path / "runs").exists()


def test_debug_shows_the_traceback(run, tmp_path):
    (tmp_path / "c.yaml").write_text("[]\n")
    result = run("search", "c.yaml", "--debug")
    assert result.exit_code != 0 and result.exc_info is not None
    assert type(result.exception).__name__ == "ConfigError"


def test_search_end_to_end_then_resume_adds_only_the_new_budget(run, write_config, tmp_path):
    config = write_config("tiny")
    result = run("search", config, "--json")
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)
    db = tmp_path / "runs" / "tiny" / "study.db"
    assert best["study"] == "tiny" and best["storage"] == f"sqlite:///{db}"
    assert set(best["params"]) == {
        "dropout",
        "learning_rate",
        "neuron_pct",
        "neuron_shrink",
        "batch_norm",
        "batch_size",
        "l2",
        "optimizer",
    }
    assert best["end_seconds"] > 0, "the end's wall time"
    trials = json.loads(run("trials", config, "--json").stdout)["trials"]
    assert [t["state"] for t in trials] == ["complete"] * 3
    # The winner is the best of the 2 finalists re-scored on 4 fresh splits (the tiny config's
    # end); the loss it reports is its mean on 2 other fresh splits (the confirmation).
    finals = {t["trial"]: t["final"] for t in trials if t["final"] is not None}
    assert best["final_splits"] == 4 and best["final_candidates"] == 2 and len(finals) == 2
    low = min(f["loss"] for f in finals.values())
    assert best["final_loss"] == low == finals[best["trial"]]["loss"]
    confirm = trials[best["trial"]]["confirm"]
    assert best["loss"] == confirm["loss"] and best["confirm_splits"] == best["loss_splits"] == 2
    assert best["loss_std"] == confirm["loss_std"]
    assert best["loss_se"] == pytest.approx(confirm["loss_std"] / 2**0.5)
    assert [t["confirm"] is None for t in trials].count(True) == 2, "only the winner is confirmed"
    assert best["search_loss"] == trials[best["trial"]]["loss"]
    assert len({tuple(f["seeds"]) for f in finals.values()}) == 1
    assert not set(confirm["seeds"]) & set(next(iter(finals.values()))["seeds"])
    assert "trial   2" in result.stderr and "best trials" in result.stderr
    # The plan for the end is announced before the first trial.
    end = [line for line in result.stderr.splitlines() if line.startswith("end: ")]
    assert end == [
        "end: 2 finalist(s) re-scored on fresh splits (4 each), the winner (as exported: an "
        "ensemble of 2 networks) confirmed on 2 more; at most 90% of the run"
    ]
    assert result.stderr.index("end: ") < result.stderr.index("trial   0")
    assert "re-scoring the best 2 trial(s) on 4 fresh splits" in result.stderr
    assert f"confirming the winner #{best['trial']} as it is exported, on 2 fresh" in (
        result.stderr
    )
    assert f"winner: #{best['trial']}: loss {best['loss']:.4f} ± " in result.stderr
    assert "an ensemble of 2 networks on 2 fresh splits" in result.stderr

    again = run("search", config)
    assert again.exit_code == 2 and "add --resume to continue it" in again.stderr

    more = run("search", config, "--resume", "--set", "search.n_iter=2", "--quiet")
    assert more.exit_code == 0, more.output
    assert more.stderr == ""
    assert "best of study tiny" in more.stdout
    assert len(rows(db, "SELECT id FROM trials")) == 4
    assert rows(db, "SELECT count(*) FROM trials WHERE state != 'complete'") == [(0,)]

    changed = run("search", config, "--resume", "--set", "space.dropout.high=0.2")
    assert changed.exit_code == 2
    assert "differs from study 'tiny' in space.dropout" in changed.stderr


def test_storage_and_study_options(run, write_config, tmp_path):
    config = write_config("tiny", search={"init_points": 1, "n_iter": 0})
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'all.db'}"
    cheap = ("--objective", CHEAP, "--quiet")
    result = run("search", config, "--storage", url, "--study", "first", "--json", *cheap)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["storage"] == url
    second = run("search", config, "--storage", url, "--study", "second", *cheap)
    assert second.exit_code == 0
    assert rows(tmp_path / "elsewhere" / "all.db", "SELECT name FROM studies ORDER BY id") == [
        ("first",),
        ("second",),
    ]
    assert not (tmp_path / "runs").exists()


def test_huge_learning_rate_fails_and_the_search_completes(run, write_config, tmp_path):
    config = write_config(
        "huge",
        space={"learning_rate": {"values": [0.01, 1.0e7]}},
        search={"init_points": 4, "n_iter": 0, "seed": 5},  # samples 1e7 three times
    )
    result = run("search", config, "--json", "--out", "out")
    assert result.exit_code == 0, result.output
    trials = rows(
        tmp_path / "out" / "study.db", "SELECT state, error_kind, error, params FROM trials"
    )
    assert len(trials) == 4
    failed = [t for t in trials if t[0] == "failed"]
    assert failed and all(t[1] == "diverged" and "nan" in t[2] for t in failed)
    assert all(json.loads(t[3])["learning_rate"] == 1.0e7 for t in failed)
    assert json.loads(result.stdout)["params"]["learning_rate"] == 0.01
    assert "failed (diverged)" in result.stderr


def test_evaluate_by_vector_and_by_name(run, write_config):
    config = write_config("tiny")
    result = run("evaluate", config, "--vector", "0.1,0.01,0.004,0.5", "--json", "--quiet")
    assert result.exit_code == 0, result.output
    score = json.loads(result.stdout)
    assert set(score) == {
        "loss",
        "loss_std",
        "split_losses",
        "epochs",
        "params",
        "seconds",
        "architecture",
        "metrics",
    }
    assert set(score["metrics"]) == {"accuracy", "balanced_accuracy", "roc_auc"}
    assert len(score["split_losses"]) == 2 and len(score["epochs"]) == 2
    assert score["loss"] == pytest.approx(sum(score["split_losses"]) / 2)
    assert score["params"]["learning_rate"] == 0.01 and score["params"]["batch_size"] == 32
    # By name, as a table: the same point and seed give the same loss.
    by_name = run(
        "evaluate",
        config,
        "--param",
        "neuron_shrink=0.5",
        "--param",
        "learning_rate=0.01",
        "--param",
        "dropout=0.1",
        "--param",
        "neuron_pct=0.004",
    )
    assert by_name.exit_code == 0, by_name.output
    assert "split losses" in by_name.stdout
    assert "architecture  5 -> 20 -> 10 -> 3" in by_name.stdout
    assert f"{score['loss']:.4f}" in by_name.stdout, "same seed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--vector", "0.1,0.01"],
            "--vector: expected 4 values in the order "
            "dropout,learning_rate,neuron_pct,neuron_shrink (got 2)",
        ),
        (
            ["--vector", "0.1,nan,0.004,0.5"],
            "--vector learning_rate: must be a finite number between 0.001 and 0.03 (got nan)",
        ),
        (
            ["--vector", "0.1,0.01,0.004,x"],
            "--vector neuron_shrink: must be a finite number between 0.3 and 0.8 (got 'x')",
        ),
        (
            ["--vector", "0.9,0.01,0.004,0.5"],
            "--vector dropout: must be between 0.0 and 0.3 (got 0.9)",
        ),
        (
            ["--vector", "0.1,0.01,0.004,0.5", "--param", "dropout=0.1"],
            "give either --vector or --param, not both",
        ),
        ([], "--param: missing value for dropout, learning_rate, neuron_pct, neuron_shrink"),
    ],
)
def test_evaluate_bad_vectors(run, write_config, args, message):
    result = run("evaluate", write_config("tiny"), *args)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"


@pytest.mark.slow
def test_ctrl_c_and_sigterm_keep_finished_trials(write_config, tmp_path):
    # Long trials (no early stop): a signal sent a second after a trial ends lands mid-trial.
    config = write_config(
        "sig", search={"init_points": 30, "n_iter": 0}, evaluation={"epochs": 100, "patience": 100}
    )
    command = [sys.executable, "-m", "tuner.cli.commands", "search", str(config), "--resume"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The first round interrupts a real network's training; the others, whose point is the
    # command's own handling, run the cheap objective's 3-second trials (no framework start).
    cheap = {**env, "PYTHONPATH": str(ROOT), "TUNER_TEST_SLEEP": "3"}
    # Then double Ctrl-Cs: the second one leaves at once, whether it lands in the trial, in
    # the writes after it or in the interpreter's shutdown (seen at 0.05 to 0.2 s).
    rounds = [(signal.SIGINT, 130, None), (signal.SIGTERM, 143, None)]
    rounds += [(signal.SIGINT, 130, gap) for gap in (0.02, 0.1, 0.2)]
    for number, (signum, code, gap) in enumerate(rounds):
        process = subprocess.Popen(
            command if number == 0 else [*command, "--objective", CHEAP],
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env if number == 0 else cheap,
        )
        for line in process.stderr:
            if line.startswith("trial "):
                break
        time.sleep(1.0)
        process.send_signal(signum)
        if gap is not None:
            time.sleep(gap)
            process.send_signal(signum)
        _, err = process.communicate(timeout=60)
        # A second signal in the interpreter's last steps (Python has put the default handlers
        # back by then) kills it: a shell sees 128 + signum, as from an exit with that code.
        left = (code,) if gap is None else (code, -signum)
        assert process.returncode in left, err
        assert "Traceback" not in err and "Exception ignored" not in err, err
        if gap is None:
            assert "error: interrupted" in err or "error: terminated" in err
    db = tmp_path / "runs" / "sig" / "study.db"
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    states = rows(db, "SELECT state, error_kind FROM trials")
    assert states.count(("complete", None)) >= 3
    assert states.count(("failed", "interrupted")) >= 2
    # A trial the double Ctrl-C left running (if it beat the last write) is failed on resume.
    storage = Storage(sqlite_url(db))
    open_study(storage, "sig", load_config(config), resume=True)
    assert all(t.state != TrialState.RUNNING for t in storage.trials(storage.get_study("sig")))
    storage.close()


@pytest.mark.slow
def test_evaluate_course_point_on_course_data(run, course_csv):
    config = Path(__file__).resolve().parent.parent / "configs" / "course.yaml"
    result = run(
        "evaluate",
        config,
        "--set",
        f"data.path={course_csv}",
        "--vector",
        "0.2,0.001,0.2,0.2",
        "--json",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    score = json.loads(result.stdout)
    print(
        f"course point: log loss {score['loss']:.4f} (course published 0.667), "
        f"splits {score['split_losses']}, epochs {score['epochs']}, {score['seconds']:.1f}s"
    )
    assert 0.55 <= score["loss"] <= 0.80
    assert score["architecture"].startswith("47 -> 1000 -> 200 -> 40 -> 7")


def test_too_large_networks_are_refused_and_never_proposed(run, write_config, tmp_path):
    config = write_config("big", evaluation={"max_params": 200})
    result = run("evaluate", config, "--vector", "0.1,0.01,0.004,0.5", "--quiet")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: too_large: 393 parameters is over evaluation.max_params (200): "
        "5 -> 20 -> 10 -> 3 (prelu, dropout 0.1), 393 parameters\n"
    )
    small = run(
        "search",
        config,
        "--set",
        "space.neuron_pct={low: 0.0002, high: 0.006}",
        "--set",
        "search.init_points=4",
        "--set",
        "search.n_iter=2",
        "--set",
        "search.final_candidates=0",
        "--json",
        "--quiet",
        "--objective",
        "tests.objectives:sized_bowl",  # refuses a network over the limit, as training would
    )
    assert small.exit_code == 0, small.output
    # Half of this range is over 200 parameters (0.004 was): the search knows it from the
    # point alone and proposes only networks within the limit, random and guided alike.
    trials = rows(tmp_path / "runs" / "big" / "study.db", "SELECT state, error_kind FROM trials")
    assert trials == [("complete", None)] * 6


def test_the_frameworks_start_up_lines_stay_off_stderr_unless_debug(write_config, tmp_path):
    """TensorFlow's C++ lines (absl, CUDA probing, oneDNN) come from the worker processes'
    file descriptor 2, which CliRunner does not see: a real process does."""
    config = write_config("quiet", search={"init_points": 1, "n_iter": 0, "final_candidates": 0})
    command = [sys.executable, "-m", "tuner.cli.commands", "search", str(config)]

    # Not inherited from this process, where a CliRunner test with --debug may have set it.
    env = {k: v for k, v in os.environ.items() if k != "TUNER_DEBUG"}

    def stderr(*extra: str) -> str:
        done = subprocess.run(
            [*command, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env
        )
        assert done.returncode == 0, done.stderr
        return done.stderr

    loud = stderr("--debug")
    native = ("absl", "cudart", "oneDNN", "cuInit", "I0000", "E0000", "W0000")
    if not any(n in loud for n in native):
        pytest.skip("this TensorFlow prints no start-up lines here: nothing to keep off")
    quiet = stderr("--resume", "--set", "search.init_points=2")
    assert "trial   1" in quiet
    assert not [line for line in quiet.splitlines() if any(n in line for n in native)], quiet

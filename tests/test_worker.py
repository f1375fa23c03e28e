"""Trials in a worker process: every way a trial can fail ends that trial only."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tuner.config.schema import validate_config
from tuner.engine.signals import Signals
from tuner.engine.worker import Worker, _start, failure_kind
from tuner.errors import StudyError, TrialFailed
from tuner.study.store import Storage, sqlite_url

from .conftest import ROOT, tiny_config_dict

PARAMS = {
    "learning_rate": 0.001,
    "neuron_pct": 0.1,
    "neuron_shrink": 0.5,
    "batch_size": 32,
    "batch_norm": False,
}


def config(tmp_path: Path, **evaluation):
    return validate_config(tiny_config_dict(tmp_path / "unused.csv", evaluation=evaluation))


def test_each_failure_kind_and_the_worker_recovers(tmp_path):
    worker = Worker(config(tmp_path, timeout=2.0), factory="tests.objectives:misbehaving")
    expected = [
        (0.01, "timed_out", "ran longer than evaluation.timeout (2 s)"),
        (0.07, "crashed", "RuntimeError: a bug in one trial"),
        (0.12, "died", "the worker process died (exit code 3)"),
        (0.17, "oom", "MemoryError: cannot allocate"),
        (0.22, "diverged", "training loss became nan at epoch 1"),
    ]
    try:
        for dropout, kind, message in expected:
            started = time.perf_counter()
            with pytest.raises(TrialFailed) as info:
                worker({**PARAMS, "dropout": dropout}, 0)
            assert (info.value.kind, info.value.message) == (kind, message)
            assert time.perf_counter() - started < 30
            score = worker({**PARAMS, "dropout": 0.3}, 0)
            assert score.loss == pytest.approx(0.01)
    finally:
        worker.close()


def test_the_worker_stays_warm_and_is_replaced_after_worker_trials(tmp_path):
    worker = Worker(config(tmp_path, worker_trials=3), factory="tests.objectives:bowl")
    pids = []
    try:
        for _ in range(5):
            worker({**PARAMS, "dropout": 0.3}, 0)
            pids.append(worker._process.pid if worker._process else None)
    finally:
        worker.close()
    assert pids[0] == pids[1] and pids[2] is None, "closed after 3 trials"
    assert pids[3] == pids[4] and pids[3] != pids[0]


def test_a_signal_during_a_worker_start_is_handled_once_the_start_is_done():
    steps = []

    class Starting:  # a process whose start() gets a SIGTERM half-way through
        def start(self):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.3)  # the handler's KeyboardInterrupt would land here
            steps.append("started")

    with pytest.raises(KeyboardInterrupt), Signals():
        _start(Starting())
        steps.append("went on")
    assert steps == ["started"], "raised after the start, before anything else"


STARTING = """
    import os, signal, time
    from tuner.engine.signals import Signals
    from tuner.engine.worker import _start

    class Starting:
        def start(self):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)  # a second signal during the start
            time.sleep(5)
            print("not left", flush=True)

    with Signals():
        _start(Starting())
"""


def test_a_second_signal_during_a_worker_start_leaves_at_once():
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STARTING)],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_oom_names():
    class ResourceExhaustedError(Exception):
        pass

    assert failure_kind(ResourceExhaustedError("OOM when allocating tensor")) == "oom"
    assert failure_kind(MemoryError()) == "oom"
    assert failure_kind(ValueError("x")) == "crashed"


def test_a_study_database_is_held_by_one_search(tmp_path):
    url = sqlite_url(tmp_path / "study.db")
    first, second = Storage(url), Storage(url)
    refused = pytest.raises(StudyError, match=r"study.db is in use by another tuner search; wait")
    with first.exclusive(), refused, second.exclusive():
        pass
    with second.exclusive():
        pass
    first.close()
    second.close()


@pytest.mark.slow
def test_kill_minus_9_at_random_moments_loses_nothing(tmp_path, tiny_csv, write_config):
    budget = 25
    path = write_config("kill", search={"init_points": 10, "n_iter": budget - 10, "seed": 11})
    command = [
        sys.executable,
        "-m",
        "tuner.cli.commands",
        "search",
        str(path),
        "--resume",
        "--quiet",
        "--objective",
        "tests.objectives:bowl",
    ]
    env = {**os.environ, "TUNER_TEST_SLEEP": "0.2", "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(7)
    kills = 0
    while kills < 10:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(1.0, 3.5))
        if process.poll() is not None:
            break  # the budget was spent before this kill
        process.kill()
        process.wait()
        kills += 1
    final = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    db = tmp_path / "runs" / "kill" / "study.db"
    with sqlite3.connect(db) as connection:
        trials = connection.execute("SELECT state, error_kind, point FROM trials").fetchall()
        integrity = connection.execute("PRAGMA integrity_check").fetchone()
    completed = [point for state, _, point in trials if state == "complete"]
    interrupted = sum(1 for _, kind, _ in trials if kind == "interrupted")
    duplicated = len(completed) - len(set(completed))
    lost = budget - len(completed)
    print(
        f"\nkill -9 harness: kills {kills}, trials {len(trials)}, completed {len(completed)}, "
        f"re-run after a kill {interrupted}, lost {lost}, duplicated {duplicated}"
    )
    assert kills >= 10
    assert len(completed) == budget and lost == 0 and duplicated == 0
    assert all(state in ("complete", "failed") for state, _, _ in trials)
    assert integrity == ("ok",)


def test_a_trial_whose_worker_died_is_retried_with_its_point_and_seed(tmp_path, monkeypatch):
    from tuner.engine.loop import open_study, run_search
    from tuner.outputs.progress import QuietReporter
    from tuner.study.store import TrialState

    monkeypatch.setenv("TUNER_TEST_MARKS", str(tmp_path))
    cfg = validate_config(
        tiny_config_dict(
            tmp_path / "unused.csv",
            # No end: its re-scores run on new seeds, which this objective would kill again.
            search={"init_points": 6, "n_iter": 0, "final_candidates": 0},
        )
    )
    storage = Storage(sqlite_url(tmp_path / "study.db"))
    worker = Worker(cfg, factory="tests.objectives:dies_once")
    try:
        study = open_study(storage, "s", cfg, resume=False)
        result = run_search(cfg, storage, study, worker, QuietReporter())
    finally:
        worker.close()
        storage.close()
    died = [t for t in result.trials if t.error_kind == "died"]
    assert died, "this seed samples dropout under 0.25"
    assert all(t.error == "the worker process was killed (SIGKILL; out of memory?)" for t in died)
    for trial in died:
        (retry,) = [t for t in result.trials if t.retry_of == trial.number]
        assert (retry.point, retry.seed, retry.state) == (trial.point, trial.seed, "complete")
    assert sum(t.counts for t in result.trials) == 6, "a death does not spend budget"
    assert sum(t.state == TrialState.COMPLETE for t in result.trials) == 6


def test_a_child_whose_search_closed_the_pipe_mid_trial_ends_quietly(tmp_path, capfd):
    # Ctrl-C: the search closes the pipe while the child trains; its reply then has nowhere
    # to go. That must not print a traceback (multiprocessing's) under the search's message.
    import multiprocessing

    from tuner.engine.worker import _child_main

    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    cfg = config(tmp_path).to_dict()
    env = {"TUNER_TEST_SLEEP": "1.0"}
    process = context.Process(
        target=_child_main, args=(child, "tests.objectives:timed_bowl", cfg, None, env)
    )
    process.start()
    child.close()
    assert parent.recv() == ("ready",)
    parent.send((PARAMS, 1, None, {}))
    parent.close()  # mid-trial: the child sleeps 1 s before its reply
    process.join(timeout=60)
    assert process.exitcode == 0
    assert "Traceback" not in capfd.readouterr().err

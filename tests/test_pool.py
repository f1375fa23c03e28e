"""Many trials at once: worker slots on one box, workers in several processes on one study.

The cheap objective (tests/objectives.py) replaces training; the study is a real SQLite file
or a real PostgreSQL database, and every worker is a real `tuner` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tuner.engine.slots import parse_gpus, plan_slots
from tuner.errors import StudyError, TrialRejected, UsageError
from tuner.study.store import Storage, TrialState, sqlite_url

from .conftest import ROOT


def test_slots_spread_over_gpus_at_most_k_each():
    slots = plan_slots(None, ["0", "1", "3"], 2)
    assert [s.gpu for s in slots] == ["0", "1", "3", "0", "1", "3"]
    assert [s.label for s in slots[:2]] == ["w0/gpu0", "w1/gpu1"]
    assert slots[0].env["CUDA_VISIBLE_DEVICES"] == "0"
    assert slots[0].env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"
    assert len(plan_slots(10, ["0", "1"], 2)) == 4, "never more than K per GPU"
    assert len(plan_slots(3, ["0", "1"], 2)) == 3
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in plan_slots(None, ["0"], 1)[0].env
    cpu = plan_slots(2, [], 1)
    expected = str(max(1, (os.cpu_count() or 1) // 2))
    assert [s.env["OMP_NUM_THREADS"] for s in cpu] == [expected, expected]
    assert all("CUDA_VISIBLE_DEVICES" not in s.env for s in cpu)
    assert parse_gpus("0, 1,3") == ["0", "1", "3"]
    assert parse_gpus("all", detect=lambda: ["0", "1"]) == ["0", "1"]
    with pytest.raises(UsageError, match="no GPU found"):
        parse_gpus("all", detect=list)
    with pytest.raises(UsageError, match="listed twice"):
        parse_gpus("0,0")


def _tuner(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "tuner.cli.commands", *args],
        cwd=cwd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen, timeout: float = 300) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def _overlaps(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that hold at one moment."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_gpus_all_are_those_cuda_visible_devices_leaves_visible(monkeypatch):
    from tuner.engine.slots import cuda_visible, visible_gpus

    assert cuda_visible(None) is None
    assert cuda_visible("2,3") == ["2", "3"]
    assert cuda_visible("GPU-5f2c,1") == ["GPU-5f2c", "1"]
    assert cuda_visible("-1") == [] and cuda_visible("") == []
    assert cuda_visible("1,-1,2") == ["1"], "CUDA stops at the first invalid entry"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    assert parse_gpus("all") == ["2", "3"]
    # A list numbers the visible GPUs, as a CUDA program sees them: 1 is the box's GPU 3.
    assert parse_gpus("1") == ["3"]
    with pytest.raises(UsageError, match="leaves 2 GPU\\(s\\) visible, numbered 0 to 1; got 2"):
        parse_gpus("0,2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    with pytest.raises(UsageError, match="no GPU found"):
        parse_gpus("all")


def test_a_shared_card_caps_each_trials_memory_for_every_backend():
    from tuner.engine.slots import MEMORY_SHARE
    from tuner.training.devices import MEMORY_VARIABLE, cap_gpu_memory

    env = plan_slots(None, ["0"], 4)[0].env
    assert float(env[MEMORY_VARIABLE]) == pytest.approx(MEMORY_SHARE / 4, abs=1e-3)
    assert env["XLA_PYTHON_CLIENT_MEM_FRACTION"] == env[MEMORY_VARIABLE]
    assert MEMORY_VARIABLE not in plan_slots(None, ["0"], 1)[0].env
    assert cap_gpu_memory() is None, "nothing to cap without the variable"


def test_oom_errors_of_every_backend_are_named_oom():
    from tuner.engine.worker import failure_kind

    runtime = type("JaxRuntimeError", (RuntimeError,), {})
    assert failure_kind(runtime("RESOURCE_EXHAUSTED: Out of memory allocating 4 GiB")) == "oom"
    assert failure_kind(runtime("INTERNAL: something else")) == "crashed"
    assert (
        failure_kind(type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory")) == "oom"
    )


def test_each_trial_sees_its_gpu_and_no_gpu_holds_more_than_k(tmp_path, write_config):
    # No final re-scores: the log has a line per trial.
    search = {"init_points": 6, "n_iter": 6, "seed": 2, "final_candidates": 0}
    config = write_config(search=search)
    log = tmp_path / "trials.log"
    # Trials of 1 s: on a loaded box the 6 worker processes get ready seconds apart, and
    # with shorter trials the first ones ready could run the whole budget one by one.
    env = {"TUNER_TEST_LOG": str(log), "TUNER_TEST_SLEEP": "1.0"}
    # K > 1 caps each process's GPU memory, which imports Keras to learn its backend; the probe
    # trains nothing, and Keras's NumPy backend starts in a fraction of TensorFlow's time.
    env["KERAS_BACKEND"] = "numpy"
    args = ["search", str(config), "--gpus", "0,1,3", "--trials-per-gpu", "2", "--json", "-q"]
    _finish(_tuner(*args, "--objective", "tests.objectives:probe", env=env, cwd=tmp_path))
    lines = [line.split() for line in log.read_text().splitlines()]
    assert len(lines) == 12
    by_device: dict[str, list[tuple[float, float]]] = defaultdict(list)
    pids: dict[str, set[str]] = defaultdict(set)
    for device, _threads, pid, start, end in lines:
        by_device[device].append((float(start), float(end)))
        pids[device].add(pid)
    assert set(by_device) <= {"0", "1", "3"} and len(by_device) >= 2
    assert max(_overlaps(v) for v in by_device.values()) <= 2
    assert _overlaps([i for v in by_device.values() for i in v]) >= 3, "trials ran at once"
    assert all(not pids[a] & pids[b] for a in pids for b in pids if a != b), "a process, a GPU"


def _check_study(url: str, budget: int) -> list:
    storage = Storage(url)
    try:
        trials = storage.trials(storage.get_study("tiny"))
    finally:
        storage.close()
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(completed) == budget, "completed trials = budget, never more"
    assert [t.number for t in trials] == list(range(len(trials))), "no lost trial"
    assert not [t for t in trials if t.state == TrialState.RUNNING], "no row left running"
    fresh = [json.dumps(t.point, sort_keys=True) for t in trials if t.retry_of is None]
    assert len(fresh) == len(set(fresh)), "no point suggested twice"
    return trials


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_eight_workers_in_two_processes_spend_the_budget_exactly(
    backend, request, tmp_path, write_config
):
    budget = 40
    url = (
        sqlite_url(tmp_path / "study.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    config = write_config(search={"init_points": 8, "n_iter": budget - 8, "seed": 4})
    env = {"TUNER_TEST_SLEEP": "0.3"}
    objective = ["--objective", "tests.objectives:bowl", "-q"]
    search = _tuner("search", str(config), "--storage", url, "--workers", "4", *objective, env=env)
    deadline = time.monotonic() + 120
    while not _study_exists(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    join = ["worker", "--storage", url, "--study", "tiny", "--workers", "4"]
    worker = _tuner(*join, *objective, env=env)
    _finish(search)
    _finish(worker)
    trials = _check_study(url, budget)
    workers = {t.worker.rsplit(":", 1)[1] for t in trials}
    assert workers == {str(search.pid), str(worker.pid)}, "both processes ran trials"


def _study_exists(url: str) -> bool:
    storage = Storage(url)
    try:
        return storage.get_study("tiny") is not None
    finally:
        storage.close()


def _running_trial_of(url: str, pid: int, timeout: float = 120):
    deadline = time.monotonic() + timeout
    storage = Storage(url)
    try:
        while time.monotonic() < deadline:
            study = storage.get_study("tiny")
            trials = storage.trials(study) if study else []
            mine = [
                t for t in trials if t.state == TrialState.RUNNING and t.worker.endswith(f":{pid}")
            ]
            if mine:
                return mine[0]
            time.sleep(0.1)
    finally:
        storage.close()
    raise AssertionError(f"process {pid} never ran a trial")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_workers_trial_goes_stale_is_retried_and_its_late_result_rejected(
    backend, request, tmp_path, write_config
):
    budget = 20  # long enough for the victim to start and take a trial
    url = (
        sqlite_url(tmp_path / "study.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    search_settings = {"init_points": 4, "n_iter": budget - 4, "heartbeat": 0.3, "grace": 2.0}
    search_settings["final_candidates"] = 0  # each call sleeps; not tested here
    config = write_config(search=search_settings)
    env = {"TUNER_TEST_SLEEP": "1.0"}
    objective = ["--objective", "tests.objectives:bowl", "-q"]
    search = _tuner("search", str(config), "--storage", url, "--workers", "2", *objective, env=env)
    while not _study_exists(url):
        time.sleep(0.2)
    victim = _tuner("worker", "--storage", url, "--study", "tiny", *objective, env=env)
    doomed = _running_trial_of(url, victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    _finish(search)
    trials = _check_study(url, budget)
    dead = trials[doomed.number]
    assert dead.state == TrialState.FAILED and dead.error_kind == "stale"
    (retry,) = [t for t in trials if t.retry_of == dead.number]
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.worker.endswith(f":{search.pid}")
    storage = Storage(url)
    try:
        with pytest.raises(TrialRejected, match="result rejected"):
            storage.finish_trial(doomed, state="complete", loss=0.0)
    finally:
        storage.close()


def test_ctrl_c_stops_every_slot_and_leaves_no_trial_running(tmp_path, write_config):
    config = write_config(search={"init_points": 6, "n_iter": 6})
    env = {"TUNER_TEST_SLEEP": "3.0"}
    args = ["search", str(config), "--workers", "3", "--objective", "tests.objectives:bowl"]
    search = _tuner(*args, env=env, cwd=tmp_path)
    url = sqlite_url(tmp_path / "runs" / "tiny" / "study.db")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.2)
        if (tmp_path / "runs" / "tiny" / "study.db").exists() and _running(url) == 3:
            break
    search.send_signal(signal.SIGINT)
    _, err = search.communicate(timeout=60)
    assert search.returncode == 130, err[-2000:]
    storage = Storage(url)
    try:
        trials = storage.trials(storage.get_study("tiny"))
    finally:
        storage.close()
    assert len(trials) == 3
    assert all(t.state == TrialState.FAILED and t.error_kind == "interrupted" for t in trials)


def _running(url: str) -> int:
    try:
        storage = Storage(url)
    except StudyError:  # the search is creating the file this very moment (seen under load)
        return 0
    try:
        study = storage.get_study("tiny")
        trials = storage.trials(study) if study else []
        return sum(t.state == TrialState.RUNNING for t in trials)
    finally:
        storage.close()


@pytest.mark.slow
def test_real_tiny_networks_with_two_workers_and_a_joining_worker(request, tmp_path, write_config):
    url = request.getfixturevalue("postgres_url")
    config = write_config(search={"init_points": 3, "n_iter": 2, "seed": 9})
    search = _tuner("search", str(config), "--storage", url, "--workers", "2", "--json", "-q")
    while not _study_exists(url):
        time.sleep(0.2)
    worker = _tuner("worker", "--storage", url, "--study", "tiny", "--json", "-q")
    best = json.loads(_finish(search, timeout=600))
    joined = json.loads(_finish(worker, timeout=600))
    trials = _check_study(url, 5)
    assert (
        best["trial"]
        == joined["trial"]
        == min(
            (t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (t.loss, t.number)
        ).number
    )
    assert all(t.epochs and t.loss > 0 for t in trials if t.state == TrialState.COMPLETE)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_paused_workers_late_result_is_rejected(backend, request, tmp_path, write_config):
    url = (
        sqlite_url(tmp_path / "study.db")
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    settings = {"init_points": 4, "n_iter": 4, "heartbeat": 0.3, "grace": 2.0}
    settings["final_candidates"] = 0  # each call sleeps 2.5 s; not tested here
    config = write_config(search=settings)
    env = {"TUNER_TEST_SLEEP": "2.5"}
    objective = ["--objective", "tests.objectives:bowl", "-q"]
    search = _tuner("search", str(config), "--storage", url, *objective, env=env)
    while not _study_exists(url):
        time.sleep(0.2)
    victim = _tuner("worker", "--storage", url, "--study", "tiny", *objective, env=env)
    paused = _running_trial_of(url, victim.pid)
    victim.send_signal(signal.SIGSTOP)  # its trial's process finishes; it cannot report
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _trial(url, paused.number).error_kind == "stale":
            break
        time.sleep(0.2)
    victim.send_signal(signal.SIGCONT)  # now it reports the finished trial: too late
    _finish(victim)
    _finish(search)
    trials = _check_study(url, 8)
    late = trials[paused.number]
    assert late.state == TrialState.FAILED and late.error_kind == "stale" and late.loss is None
    (retry,) = [t for t in trials if t.retry_of == paused.number]
    assert retry.state == TrialState.COMPLETE


def _trial(url: str, number: int):
    storage = Storage(url)
    try:
        return storage.trials(storage.get_study("tiny"))[number]
    finally:
        storage.close()

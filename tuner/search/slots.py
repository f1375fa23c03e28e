"""Many trials at once on one box: worker slots, each a thread driving its own worker process.

Each slot loops ask -> run -> tell on the shared study until the budget is spent. A slot may be
pinned to a GPU (`CUDA_VISIBLE_DEVICES` in its process's environment); a GPU gets at most
`trials_per_gpu` slots, so never more than that many trials at once. Without GPUs the slots
share the CPU cores: each process gets `cores // workers` threads (at least 1).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuner.config.schema import Config
from tuner.errors import SearchInterrupted, TrialRejected, UsageError
from tuner.optimize.asking import Asker
from tuner.search.budget import Deadline
from tuner.search.loop import (
    Objective,
    Reporter,
    SearchResult,
    Signals,
    as_compared,
    best_trial,
    check_failure_streak,
    fail_own,
    finish_search,
    report_start,
    run_trial,
)
from tuner.search.racing import racing
from tuner.study.heartbeat import Heartbeat
from tuner.study.store import Storage, StudyRecord, TrialRecord
from tuner.study.warmstart import warm_trials

_THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


@dataclass(frozen=True)
class Slot:
    """One worker process: its number, its GPU (None: CPU) and its environment."""

    index: int
    gpu: str | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How the progress display names it: `w0`, or `w0/gpu1`."""
        return f"w{self.index}" + (f"/gpu{self.gpu}" if self.gpu is not None else "")


def visible_gpus() -> list[str]:
    """The GPUs of this box, as nvidia-smi numbers them (none without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return []
    done = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def parse_gpus(spec: str | None, detect: Callable[[], list[str]] = visible_gpus) -> list[str]:
    """`--gpus`: None (CPU), `all`, or a comma-separated list such as `0,1,3`."""
    if spec is None:
        return []
    gpus = detect() if spec == "all" else [g.strip() for g in spec.split(",") if g.strip()]
    if not gpus:
        raise UsageError(f"--gpus {spec}: no GPU found; give a list such as 0,1 or leave it out")
    if len(set(gpus)) != len(gpus):
        raise UsageError(f"--gpus {spec}: a GPU is listed twice")
    return gpus


def plan_slots(workers: int | None, gpus: Sequence[str], per_gpu: int) -> list[Slot]:
    """The worker slots: with GPUs, round-robin over them, at most `per_gpu` on each."""
    if per_gpu < 1 or (workers is not None and workers < 1):
        raise UsageError("--workers and --trials-per-gpu must be at least 1")
    if not gpus:
        count = workers or 1
        threads = str(max(1, (os.cpu_count() or 1) // count))
        return [Slot(i, None, dict.fromkeys(_THREAD_VARIABLES, threads)) for i in range(count)]
    capacity = len(gpus) * per_gpu
    count = min(workers, capacity) if workers is not None else capacity
    return [
        Slot(i, gpus[i % len(gpus)], _gpu_env(gpus[i % len(gpus)], per_gpu)) for i in range(count)
    ]


def _gpu_env(gpu: str, per_gpu: int) -> dict[str, str]:
    env = {"CUDA_VISIBLE_DEVICES": gpu, "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    if per_gpu > 1:  # share the card: JAX preallocates 75% by default, cap each trial's part
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
    return env


class _Shared:
    """What the slot threads share: the study, the stop flag, the display and the first error."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        study: StudyRecord,
        reporter: Reporter,
        deadline: Deadline,
        asker: Asker,
    ) -> None:
        self.config, self.storage, self.study, self.reporter = config, storage, study, reporter
        self.deadline = deadline
        self.asker = asker
        self.stop = threading.Event()
        self.time_up = False
        self.lock = threading.Lock()
        self.errors: list[BaseException] = []
        self.running: dict[str, int | None] = {}

    def show(self, slot: Slot, trial: TrialRecord | None) -> None:
        with self.lock:
            self.running[slot.label] = trial.number if trial is not None else None
            if trial is not None:
                self.reporter.trial_started(trial)
            self.reporter.slots_changed(dict(self.running))

    def failed(self, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(exc)
        self.stop.set()


def _time_up(shared: _Shared) -> bool:
    """True once the time budget (less its reserve) is spent; it stays so: the reserve moves
    with the finalists, and a slot that stopped must not see others go on."""
    deadline = shared.deadline
    if not shared.time_up and deadline.seconds is not None:
        trials = shared.storage.trials(shared.study) if deadline.reserve is not None else ()
        shared.time_up = deadline.passed(trials)
    return shared.time_up


def _next(shared: _Shared) -> TrialRecord | None:
    """The next trial for a slot; None once the budget or the time is spent (waits while
    others run)."""
    search = shared.config.search
    while not shared.stop.is_set() and not _time_up(shared):
        asked = shared.storage.ask(shared.study, shared.asker.choose, search.grace)
        if asked.trial is not None:
            return asked.trial
        if sum(t.counts for t in asked.trials) >= search.budget:
            return None
        shared.stop.wait(min(search.heartbeat, 1.0))  # another worker's trial may go stale
    return None


def _slot_loop(
    shared: _Shared, slot: Slot, objective: Objective, heartbeat: Heartbeat, signals: Signals
) -> None:
    try:
        while (trial := _next(shared)) is not None:
            shared.show(slot, trial)
            with heartbeat.running(trial), contextlib.suppress(TrialRejected):
                finished = run_trial(shared.storage, trial, objective, signals)
                trials = shared.storage.trials(shared.study)
                shown = as_compared(finished, trials)
                with shared.lock:
                    shared.reporter.trial_finished(shown, best_trial(trials))
            shared.show(slot, None)
            trials = shared.storage.trials(shared.study)
            check_failure_streak(trials, shared.config.search.max_consecutive_failures)
    except BaseException as exc:
        shared.failed(exc)


def run_pool(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objectives: Sequence[tuple[Slot, Objective]],
    reporter: Reporter,
    deadline: Deadline | None = None,
    asker: Asker | None = None,
    signals: Signals | None = None,
) -> SearchResult:
    """Run the slots until the study's budget is spent or `deadline` has passed (running
    trials finish); returns the best trial. Each slot races its top trials as run_search does.

    `asker` and `signals` as in run_search.
    """
    if deadline is None:
        deadline = Deadline(config.search.time_budget)
    asker = asker or Asker(config, warm_trials(config))
    objectives = [
        (slot, racing(objective, config, storage, study, deadline.room))
        for slot, objective in objectives
    ]
    shared = _Shared(config, storage, study, reporter, deadline, asker)
    report_start(storage, study, reporter, config.search.budget)
    signals = signals or Signals()
    heartbeat = Heartbeat(storage, config.search.heartbeat)

    def interrupted(_stop: SearchInterrupted) -> None:
        shared.stop.set()
        fail_own(storage, study, heartbeat, "interrupted by a signal")

    # Signals outermost: a second signal during the cleanup's writes leaves at once.
    with signals, signals.stopping(interrupted), heartbeat:
        _run_threads(shared, objectives, heartbeat, signals)
    if shared.errors:
        with contextlib.suppress(Exception):
            fail_own(storage, study, heartbeat, "the search stopped with an error")
        raise shared.errors[0]
    counted = sum(t.counts for t in storage.trials(study))
    return finish_search(storage, study, reporter, time_up=counted < config.search.budget)


def _run_threads(
    shared: _Shared,
    objectives: Sequence[tuple[Slot, Objective]],
    heartbeat: Heartbeat,
    signals: Signals,
) -> None:
    threads = [
        threading.Thread(
            target=_slot_loop,
            args=(shared, slot, objective, heartbeat, signals),
            name=slot.label,
            daemon=True,
        )
        for slot, objective in objectives
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)  # short joins: the main thread still sees Ctrl-C
    finally:
        shared.stop.set()

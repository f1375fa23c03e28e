"""The worker slots of one box, each pinned to a GPU or given its share of the cores."""

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuner.errors import UsageError

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
    command = ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
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
    shared = {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    if per_gpu > 1:  # share the card: JAX preallocates 75% by default, cap each trial's part
        shared["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        shared["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 / per_gpu:.3f}"
    chosen = [gpus[i % len(gpus)] for i in range(count)]
    return [Slot(i, gpu, {"CUDA_VISIBLE_DEVICES": gpu, **shared}) for i, gpu in enumerate(chosen)]

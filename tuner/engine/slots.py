"""The worker slots of one box, each pinned to a GPU or given its share of the cores."""

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuner.errors import UsageError
from tuner.training.devices import MEMORY_VARIABLE

# The part of a shared card's memory the trials on it may take together: the rest is the
# CUDA contexts' own and headroom for fragmentation.
MEMORY_SHARE = 0.9

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


def cuda_visible(value: str | None) -> list[str] | None:
    """The GPUs a `CUDA_VISIBLE_DEVICES` value leaves visible (None: unset, all of them). As
    CUDA reads it: the entries up to the first invalid one, so `-1` or `""` hides every GPU."""
    if value is None:
        return None
    entries = [entry.strip() for entry in value.split(",")]
    return list(itertools.takewhile(lambda e: e != "" and not e.startswith("-"), entries))


def box_gpus() -> list[str]:
    """The GPUs of this box, as nvidia-smi numbers them (none without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return []
    command = ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def visible_gpus() -> list[str]:
    """The GPUs this process may use, each as the child's `CUDA_VISIBLE_DEVICES` names it:
    those the parent's `CUDA_VISIBLE_DEVICES` leaves visible, as every CUDA program does."""
    visible = cuda_visible(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return box_gpus() if visible is None else visible


def parse_gpus(spec: str | None, detect: Callable[[], list[str]] = visible_gpus) -> list[str]:
    """`--gpus`: None (CPU), `all`, or a comma-separated list such as `0,1,3`: ordinals among
    the visible GPUs, as CUDA numbers them under `CUDA_VISIBLE_DEVICES`."""
    if spec is None:
        return []
    visible = detect()
    if spec == "all":
        gpus = visible
    else:
        gpus = [g.strip() for g in spec.split(",") if g.strip()]
        if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
            gpus = [_ordinal(spec, g, visible) for g in gpus]
    if not gpus:
        raise UsageError(f"--gpus {spec}: no GPU found; give a list such as 0,1 or leave it out")
    if len(set(gpus)) != len(gpus):
        raise UsageError(f"--gpus {spec}: a GPU is listed twice")
    return gpus


def _ordinal(spec: str, gpu: str, visible: Sequence[str]) -> str:
    """The visible GPU that ordinal `gpu` names under CUDA_VISIBLE_DEVICES."""
    if not gpu.isdigit() or int(gpu) >= len(visible):
        raise UsageError(
            f"--gpus {spec}: CUDA_VISIBLE_DEVICES leaves {len(visible)} GPU(s) visible, "
            f"numbered 0 to {len(visible) - 1}; got {gpu}"
        )
    return visible[int(gpu)]


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
    if per_gpu > 1:  # share the card: each trial's part capped, whatever the backend
        fraction = f"{MEMORY_SHARE / per_gpu:.3f}"
        shared[MEMORY_VARIABLE] = fraction  # TensorFlow and PyTorch: training/devices.py
        shared["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"  # JAX takes 75% at start otherwise
        shared["XLA_PYTHON_CLIENT_MEM_FRACTION"] = fraction
    chosen = [gpus[i % len(gpus)] for i in range(count)]
    return [Slot(i, gpu, {"CUDA_VISIBLE_DEVICES": gpu, **shared}) for i, gpu in enumerate(chosen)]

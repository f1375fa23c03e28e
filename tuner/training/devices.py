"""The GPU memory a worker process may take when trials share a card: each backend capped by
its own means. JAX reads XLA_PYTHON_CLIENT_MEM_FRACTION itself; TensorFlow and PyTorch need a
call before their first use of the GPU, which `cap_gpu_memory` makes in the worker's child."""

import os
import shutil
import subprocess

MEMORY_VARIABLE = "TUNER_GPU_MEMORY_FRACTION"


def cap_gpu_memory() -> float | None:
    """Apply `TUNER_GPU_MEMORY_FRACTION` to this process's backend; the fraction, or None."""
    value = os.environ.get(MEMORY_VARIABLE)
    if not value:
        return None
    fraction = float(value)
    import keras  # the backend the objective will train with

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_per_process_memory_fraction(fraction, 0)
    elif backend == "tensorflow":
        _cap_tensorflow(fraction)
    return fraction


def _cap_tensorflow(fraction: float) -> None:
    """A logical device of `fraction` of the card's memory (TensorFlow has no fraction)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    total = _total_mib()
    if not gpus or total is None:
        return
    limit = int(total * fraction)
    tf.config.set_logical_device_configuration(
        gpus[0], [tf.config.LogicalDeviceConfiguration(memory_limit=limit)]
    )


def _total_mib() -> int | None:
    """The memory of this process's first visible GPU in MiB, from nvidia-smi."""
    if shutil.which("nvidia-smi") is None:
        return None
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    command = ["nvidia-smi", "-i", gpu, "--query-gpu=memory.total", "--format=csv,noheader,nounits"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = done.stdout.split()
    return int(lines[0]) if done.returncode == 0 and lines and lines[0].isdigit() else None

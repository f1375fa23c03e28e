"""A hook the trainer calls after each epoch, so that whoever runs a trial can watch it."""

from collections.abc import Callable

EpochHook = Callable[[int, float], None]  # (epoch from 1, the mean held-out loss so far)

_hook: EpochHook | None = None


def set_epoch_hook(hook: EpochHook | None) -> None:
    """Call `hook` after each epoch of every later training in this process (None: stop)."""
    global _hook
    _hook = hook


def epoch_done(epoch: int, loss: float) -> None:
    """Tell the hook, if any, that `epoch` ended with held-out loss `loss`."""
    if _hook is not None:
        _hook(epoch, loss)

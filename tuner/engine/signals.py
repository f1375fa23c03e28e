"""Ctrl-C and SIGTERM while a search or a re-score runs: remembered, and raised once."""

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Self

from tuner.errors import SearchInterrupted


class Signals:
    """SIGINT and SIGTERM as SearchInterrupted while a search runs, remembered (TensorFlow may
    re-raise one as a RuntimeError); a second one leaves at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._depth = 0  # the outermost `with` installs and restores the handlers

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            leave(signum, _frame)
        self.received = signum
        # KeyboardInterrupt, as Python's own handler: framework code that catches Exception lets
        # it through.
        raise KeyboardInterrupt

    def stopped(self) -> SearchInterrupted:
        """The error that ends the search after the signal received (SIGINT if none)."""
        signum = self.received or signal.SIGINT
        name = "interrupted" if signum == signal.SIGINT else "terminated"
        return SearchInterrupted(signum, f"{name}; finished trials are kept")

    @contextlib.contextmanager
    def stopping(
        self, cleanup: Callable[[SearchInterrupted], object] | None = None
    ) -> Iterator[None]:
        """Ctrl-C or SIGTERM inside comes out as one SearchInterrupted, after `cleanup(it)`."""
        try:
            yield
        except (KeyboardInterrupt, SearchInterrupted) as exc:
            stop = exc if isinstance(exc, SearchInterrupted) else self.stopped()
            if cleanup is not None:
                cleanup(stop)
            if stop is exc:
                raise
            raise stop from exc

    def __enter__(self) -> Self:
        self._depth += 1
        if self._depth == 1:
            self._previous = _install(self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            _restore(self._previous)
            self._previous.clear()


def leave(signum: int, _frame: FrameType | None = None) -> None:
    """Leave at once with exit code 128 + signum (every write is one transaction)."""
    os._exit(128 + signum)


def leave_on_next_signal() -> None:
    """From now on SIGINT and SIGTERM leave at once, without a traceback."""
    _install(leave)


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """SIGINT and SIGTERM held back inside, then raised; a second one leaves at once."""
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if held:
            leave(signum, frame)
        held.append(signum)

    previous = _install(hold)
    try:
        yield
    finally:
        _restore(previous)
    for signum in held:
        signal.raise_signal(signum)


def _restore(previous: dict[int, Any]) -> None:
    """Put back the handlers `_install` replaced (None: not set from Python)."""
    for signum, handler in previous.items():
        if handler is not None:
            signal.signal(signum, handler)


def _install(handler: Any) -> dict[int, Any]:
    """Handle SIGINT and SIGTERM with `handler` (main thread only); returns those replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}

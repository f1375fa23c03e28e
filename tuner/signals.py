"""Ctrl-C and SIGTERM while a search or a re-score runs: remembered, and raised once."""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

from tuner.errors import SearchInterrupted


class Signals:
    """Turns SIGINT and SIGTERM into SearchInterrupted while a search runs, and remembers them.

    Remembering matters: a signal raised inside framework code can come back wrapped in
    another exception (TensorFlow re-raises it as a RuntimeError), which must not be mistaken
    for a crashed trial.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is not None:
            # A second signal: leave at once. Every write is one transaction, so the study
            # stays sound; a trial left running is re-run by --resume.
            os._exit(128 + signum)
        self.received = signum
        # KeyboardInterrupt, like Python's own SIGINT handler: framework code that catches
        # Exception lets it through (raising an Exception here crashed TensorFlow).
        raise KeyboardInterrupt

    def stopped(self) -> SearchInterrupted:
        """The error that ends the search after the signal received (SIGINT if none)."""
        signum = self.received or signal.SIGINT
        name = "interrupted" if signum == signal.SIGINT else "terminated"
        return SearchInterrupted(signum, f"{name}; finished trials are kept")

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

"""Heartbeats of this process's running trials (one older than `search.grace` goes stale)."""

import contextlib
import threading
from collections.abc import Iterator
from typing import Self

from tuner.study.store import Storage, TrialRecord


class Heartbeat:
    """Beats for the trials this process runs; start with `with Heartbeat(...):`."""

    def __init__(self, storage: Storage, interval: float) -> None:
        self._storage = storage
        self._interval = interval
        self._trials: dict[int, TrialRecord] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(Exception):  # a lost database shows as stale trials
                self._storage.beat(self.trials())

    def trials(self) -> list[TrialRecord]:
        with self._lock:
            return list(self._trials.values())

    @contextlib.contextmanager
    def running(self, trial: TrialRecord) -> Iterator[None]:
        """Beat for `trial` while the block runs."""
        with self._lock:
            self._trials[trial.id] = trial
        try:
            yield
        finally:
            with self._lock:
                self._trials.pop(trial.id, None)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

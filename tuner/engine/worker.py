"""Trials in a warm child process (one framework start per worker); a crash ends one trial."""

import contextlib
import importlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from multiprocessing.connection import Connection
from typing import Any

from tuner.config.schema import Config, Scalar, validate_config
from tuner.engine.signals import held_signals
from tuner.errors import TrialFailed, UsageError
from tuner.training.devices import cap_gpu_memory
from tuner.training.progress import EpochHook, set_epoch_hook

Factory = Callable[[Config, Any], Callable[[Mapping[str, Scalar], int], Any]]
DEFAULT_FACTORY = "tuner.training.evaluate:make_objective"
# Exception class names that mean the trial ran out of memory, whatever the backend.
_OOM_NAMES = {"MemoryError", "ResourceExhaustedError", "OutOfMemoryError"}
# JAX raises one class for every runtime error; its message says which.
_JAX_ERRORS = {"XlaRuntimeError", "JaxRuntimeError"}


def load_factory(path: str) -> Factory:
    """The objective factory named `module:function`."""
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        raise UsageError(
            f"--objective: cannot import {path!r} ({exc}); give module:function"
        ) from exc


def failure_kind(exc: BaseException) -> str:
    """`oom` for out-of-memory errors of Python or the framework, else `crashed`."""
    name = type(exc).__name__
    if name in _OOM_NAMES or (name in _JAX_ERRORS and "RESOURCE_EXHAUSTED" in str(exc)):
        return "oom"
    return "crashed"


def attempt(objective: Callable[..., Any], params: Mapping[str, Scalar], seed: int) -> tuple:
    """Run one trial and turn every outcome into a picklable reply."""
    try:
        return ("ok", objective(params, seed))
    except TrialFailed as exc:
        return ("failed", exc.kind, exc.message)
    except UsageError as exc:
        return ("usage", str(exc))
    except Exception as exc:
        return _failure(exc)


def _failure(exc: Exception) -> tuple[str, str, str]:
    return ("failed", failure_kind(exc), f"{type(exc).__name__}: {exc}")


def _exit_with_parent(parent: int) -> None:
    # A worker whose search died (even by kill -9) must not train on alone.
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _objectives(factory: str, config: Config, dataset: Any) -> Callable[[int | None], Any]:
    """The objective of each split count (None: `evaluation.splits`), each built once."""
    built: dict[int | None, Any] = {}

    def objective_for(splits: int | None) -> Any:
        if splits not in built:
            changed = config
            if splits is not None:
                evaluation = config.evaluation.model_copy(update={"splits": splits})
                changed = config.model_copy(update={"evaluation": evaluation})
            built[splits] = load_factory(factory)(changed, dataset)
        return built[splits]

    return objective_for


def _quiet_native_stderr() -> None:
    """Send file descriptor 2 to /dev/null unless `--debug`: no variable silences every C++
    start-up line of the frameworks, and a trial's failures come back through the pipe."""
    if os.environ.get("TUNER_DEBUG"):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _child_main(
    conn: Connection,
    factory: str,
    config: dict[str, Any],
    dataset: Any,
    env: Mapping[str, str] | None = None,
) -> None:
    os.environ.update(env or {})  # before the factory imports a framework: GPUs, threads
    _quiet_native_stderr()
    cap_gpu_memory()  # before the framework first touches the GPU
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the search decides what Ctrl-C means
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    # The search closed the pipe (Ctrl-C, or it stopped): nobody wants the reply any more.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        _serve(conn, factory, config, dataset)


def _serve(conn: Connection, factory: str, config: dict[str, Any], dataset: Any) -> None:
    """Build the objectives, say "ready", then answer each request until told to stop."""
    try:
        objective_for = _objectives(factory, validate_config(config), dataset)
        objective_for(None)
    except UsageError as exc:
        conn.send(("usage", str(exc)))
        return
    except Exception as exc:
        conn.send(_failure(exc))
        return
    conn.send(("ready",))
    set_epoch_hook(_epoch_sender(conn))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        params, seed, splits, options = request
        try:
            objective = objective_for(splits)
        except Exception as exc:
            conn.send(_failure(exc))
            continue
        conn.send(attempt(partial(objective, **options) if options else objective, params, seed))


def _epoch_sender(conn: Connection, every: float = 0.5) -> EpochHook:
    """Send ("epoch", epoch, loss) up the pipe, at most every `every` seconds."""
    last = [0.0]

    def send(epoch: int, loss: float) -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            conn.send(("epoch", epoch, loss))

    return send


class Worker:
    """A replaceable child process that runs trials; call it like an objective."""

    def __init__(
        self,
        config: Config,
        dataset: Any = None,
        factory: str = DEFAULT_FACTORY,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._env = dict(env or {})
        self._dataset = dataset
        self._factory = factory
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._trials = 0

    def __call__(
        self,
        params: Mapping[str, Scalar],
        seed: int,
        splits: int | None = None,
        on_epoch: EpochHook | None = None,
        **options: Any,
    ) -> Any:
        """Run one trial in the child (`options` are the objective's keywords); `on_epoch` hears
        each epoch's held-out loss; TrialFailed for every way it can fail."""
        conn = self._ensure_started()
        conn.send((dict(params), seed, splits, options))
        self._trials += 1
        reply = self._wait(conn, on_epoch)
        if self._trials >= self._config.evaluation.worker_trials:
            self.close()
        return _unpack(reply)

    def _wait(self, conn: Connection, on_epoch: EpochHook | None) -> tuple:
        """The trial's reply, passing its epoch messages on; within `evaluation.timeout`."""
        timeout = self._config.evaluation.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ready = conn.poll(left)
            except BaseException:
                self.close(kill=True)  # Ctrl-C or a signal: free the child's memory at once
                raise
            if not ready:
                self.close(kill=True)
                raise TrialFailed(
                    "timed_out", f"ran longer than evaluation.timeout ({timeout:g} s)"
                )
            reply = self._receive()
            if reply[0] != "epoch":
                return reply
            if on_epoch is not None:
                on_epoch(reply[1], reply[2])

    def _ensure_started(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self.close(kill=True)
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(
            target=_child_main,
            args=(child, self._factory, self._config.to_dict(), self._dataset, self._env),
            daemon=True,
        )
        _start(self._process)
        child.close()
        self._conn, self._trials = parent, 0
        try:
            reply = self._receive()  # the child imports its framework first: seconds
        except BaseException:
            self.close(kill=True)  # Ctrl-C or a signal while it starts
            raise
        if reply[0] != "ready":
            _unpack(reply)
        return parent

    def _receive(self) -> tuple:
        assert self._conn is not None and self._process is not None
        try:
            return self._conn.recv()  # type: ignore[no-any-return]
        except (EOFError, ConnectionError, OSError):
            self._process.join(timeout=5)
            code = self._process.exitcode
            self.close(kill=True)
            if code is not None and code == -signal.SIGKILL:
                return ("failed", "died", "the worker process was killed (SIGKILL; out of memory?)")
            return ("failed", "died", f"the worker process died (exit code {code})")

    def close(self, kill: bool = False) -> None:
        """Stop the child: politely, or with SIGKILL (before its pipe closes under it)."""
        if kill and self._process is not None and self._process.is_alive():
            self._process.kill()
        if self._conn is not None:
            if not kill:
                with contextlib.suppress(OSError):
                    self._conn.send(None)
            self._conn.close()
        if self._process is not None and self._process.pid is not None:  # it was started
            self._process.join(timeout=10)
        self._process, self._conn = None, None


def _start(process: multiprocessing.process.BaseProcess) -> None:
    """Start the child with Ctrl-C and SIGTERM held back: one inside leaves it half-started."""
    with held_signals():
        process.start()


def _unpack(reply: tuple) -> Any:
    if reply[0] == "ok":
        return reply[1]
    if reply[0] == "usage":
        raise UsageError(reply[1])
    raise TrialFailed(reply[1], reply[2])

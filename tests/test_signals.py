"""Ctrl-C and SIGTERM handling (tuner/signals.py): nesting, and a second signal leaving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tuner.engine.signals import Signals
from tuner.errors import SearchInterrupted


def test_a_signal_is_raised_once_remembered_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signals = Signals()
    with pytest.raises(KeyboardInterrupt), signals:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler's KeyboardInterrupt ends it at once
    assert signals.received == signal.SIGTERM
    stopped = signals.stopped()
    assert isinstance(stopped, SearchInterrupted) and stopped.exit_code == 143
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_nested_with_keeps_the_handlers_until_the_outermost_ends():
    before = signal.getsignal(signal.SIGINT)
    signals = Signals()
    with signals:
        installed = signal.getsignal(signal.SIGINT)
        assert installed != before
        with signals:
            assert signal.getsignal(signal.SIGINT) == installed
        # The inner `with` ended (a search); its caller's cleanup is still covered.
        assert signal.getsignal(signal.SIGINT) == installed
    assert signal.getsignal(signal.SIGINT) == before
    with signals:  # and it can be entered again afterwards
        assert signal.getsignal(signal.SIGINT) == installed
    assert signal.getsignal(signal.SIGINT) == before


def test_stopping_turns_a_signal_into_one_search_interrupted_after_the_cleanup():
    signals, cleaned = Signals(), []
    with pytest.raises(SearchInterrupted) as caught, signals, signals.stopping(cleaned.append):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_code == 143
    assert isinstance(caught.value.__cause__, KeyboardInterrupt)
    assert cleaned == [caught.value], "the cleanup ran once, with the error raised"
    deeper = SearchInterrupted(signal.SIGINT, "interrupted; finished trials are kept")
    with pytest.raises(SearchInterrupted) as caught, signals.stopping(cleaned.append):
        raise deeper  # a nested search's, already turned: passed on as it is
    assert caught.value is deeper and cleaned[-1] is deeper
    with pytest.raises(ValueError), signals.stopping(cleaned.append):
        raise ValueError("not a signal")
    assert len(cleaned) == 2, "no cleanup for other errors"


PROGRAM = """
    import os, signal, sys, time
    from tuner.engine.signals import Signals, leave_on_next_signal

    def second() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    signals = Signals()
    with signals:  # the caller's (main.search)
        try:
            with signals:  # the search's
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
        except KeyboardInterrupt:
            print("first", flush=True)
            if sys.argv[1] == "inside":
                second()  # during the caller's cleanup
    leave_on_next_signal()  # the CLI's way out after an interruption
    second()
    print("not left", flush=True)
"""


@pytest.mark.parametrize("where", ["inside", "after"])
def test_a_second_signal_leaves_at_once_with_its_exit_code(where):
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROGRAM), where],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stdout == "first\n"
    assert done.stderr == ""

"""Cheap objectives for tests: a known function instead of training, run in worker processes.
Each takes the keyword options the end of a search passes (`members=K` for the winner's
confirmation) and ignores them."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tuner.errors import TrialFailed
from tuner.training.evaluate import Score


def bowl_loss(params: Mapping[str, Any]) -> float:
    """Smallest at dropout 0.2 and learning rate 1e-3."""
    return (params["dropout"] - 0.2) ** 2 + (math.log10(params["learning_rate"]) + 3) ** 2 / 10


def _score(loss: float) -> Score:
    return Score(loss=loss, loss_std=0.0, split_losses=(loss, loss), epochs=(1, 1), seconds=0.0)


def bowl(_config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl, after a short sleep (TUNER_TEST_SLEEP seconds, default 0.05)."""
    pause = float(os.environ.get("TUNER_TEST_SLEEP", "0.05"))

    def objective(params: Mapping[str, Any], _seed: int, **_options: Any) -> Score:
        time.sleep(pause)
        return _score(bowl_loss(params))

    return objective


def sized_bowl(config: Any, dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl, refusing a point whose network is over `evaluation.max_params` as training
    would (TrialFailed too_large), without training."""
    from tuner.training.evaluate import refuse_too_large

    def objective(params: Mapping[str, Any], _seed: int, **_options: Any) -> Score:
        refuse_too_large(config, dataset, params)
        return _score(bowl_loss(params))

    return objective


def timed_bowl(_config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl after TUNER_TEST_SLEEP seconds, which it reports as the trial's seconds."""
    pause = float(os.environ.get("TUNER_TEST_SLEEP", "0.05"))

    def objective(params: Mapping[str, Any], _seed: int, **_options: Any) -> Score:
        time.sleep(pause)
        loss = bowl_loss(params)
        return replace(_score(loss), seconds=pause)

    return objective


def misbehaving(_config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """Fails in a different way depending on dropout (0-0.1 hangs, then crashes, dies, OOMs)."""

    def objective(params: Mapping[str, Any], _seed: int, **_options: Any) -> Score:
        dropout = params["dropout"]
        if dropout < 0.05:
            time.sleep(60)
        elif dropout < 0.1:
            raise RuntimeError("a bug in one trial")
        elif dropout < 0.15:
            os._exit(3)
        elif dropout < 0.2:
            raise MemoryError("cannot allocate")
        elif dropout < 0.25:
            raise TrialFailed("diverged", "training loss became nan at epoch 1")
        return _score(bowl_loss(params))

    return objective


def probe(_config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl, logging what each trial's process sees: a line per trial to TUNER_TEST_LOG
    with its GPU (CUDA_VISIBLE_DEVICES), thread setting, pid, and start and end times."""
    pause = float(os.environ.get("TUNER_TEST_SLEEP", "0.05"))
    log = os.environ["TUNER_TEST_LOG"]

    def objective(params: Mapping[str, Any], _seed: int, **_options: Any) -> Score:
        started = time.time()
        time.sleep(pause)
        device = os.environ.get("CUDA_VISIBLE_DEVICES", "-")
        threads = os.environ.get("OMP_NUM_THREADS", "-")
        with open(log, "a") as handle:  # noqa: PTH123
            handle.write(f"{device} {threads} {os.getpid()} {started} {time.time()}\n")
        return _score(bowl_loss(params))

    return objective


def dies_once(_config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl, but the first run of each point with dropout under 0.25 SIGKILLs its own
    process, as the kernel's OOM killer or a crash in native code would; runs are remembered
    as files in the folder TUNER_TEST_MARKS."""
    marks = Path(os.environ["TUNER_TEST_MARKS"])

    def objective(params: Mapping[str, Any], seed: int, **_options: Any) -> Score:
        mark = marks / f"{params['dropout']:.12f}-{seed}"
        if params["dropout"] < 0.25 and not mark.exists():
            mark.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return _score(bowl_loss(params))

    return objective


def noisy_bowl(config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl plus bootstrap-like noise: the mean of `evaluation.splits` draws of sd 0.05,
    fixed by the seed. More splits, less noise; another seed, other noise."""
    splits = config.evaluation.splits

    def objective(params: Mapping[str, Any], seed: int, **_options: Any) -> Score:
        noise = np.random.default_rng(seed).normal(0.0, 0.05, splits)
        losses = tuple(float(bowl_loss(params) + n) for n in noise)
        spread = float(np.std(losses, ddof=1)) if splits > 1 else 0.0
        return Score(float(np.mean(losses)), spread, losses, (1,) * splits, 0.0)

    return objective


def noisy_losses(params: Mapping[str, Any], seed: int, splits: int, sd: float) -> list[float]:
    """The bowl plus noise per split, drawn from the seed and the point (deterministic)."""
    point = int(params["dropout"] * 1e9) + int(params["learning_rate"] * 1e12)
    rng = np.random.default_rng([seed, point])
    return [bowl_loss(params) + float(x) for x in rng.normal(0.0, sd, splits)]


_SEEN: list[dict[str, Any]] = []


def noisy(config: Any, _dataset: Any) -> Callable[[Mapping[str, Any], int], Score]:
    """The bowl with noise on `evaluation.splits` splits (sd TUNER_TEST_NOISE, default 0.05).

    Each call appends `parent-pid seed splits` to TUNER_TEST_LOG when set. With
    TUNER_TEST_FAIL_REPEAT set, a point scored before in this process fails as diverged (its
    final re-score, as the search scores each point once).
    """
    splits = config.evaluation.splits
    sd = float(os.environ.get("TUNER_TEST_NOISE", "0.05"))
    fail_repeat = bool(os.environ.get("TUNER_TEST_FAIL_REPEAT"))
    log = os.environ.get("TUNER_TEST_LOG")

    def objective(params: Mapping[str, Any], seed: int, **_options: Any) -> Score:
        if log:
            with open(log, "a") as handle:  # noqa: PTH123
                handle.write(f"{os.getppid()} {seed} {splits}\n")
        if fail_repeat and dict(params) in _SEEN:
            raise TrialFailed("diverged", "held-out loss is nan")
        _SEEN.append(dict(params))
        losses = noisy_losses(params, seed, splits, sd)
        std = float(np.std(losses, ddof=1)) if splits > 1 else 0.0
        return Score(float(np.mean(losses)), std, tuple(losses), (1,) * splits, 0.0)

    return objective

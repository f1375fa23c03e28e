"""A surrogate of logged trials for whole searches offline: a point's true loss and seconds.

Used by benchmarks/loss_fence.py and benchmarks/racing_budget.py. It reads the trial lines
that `tuner search` printed (the `.log` files of benchmarks/results/):

- a point logged more than once (a seed's start-up points recur in each log of that seed)
  counts once, its losses merged (`logged`), so the order of the logs does not matter;
- the true loss of a point is a random forest of the logged losses (in log) over the unit
  coordinates; each split's loss is it plus Gaussian noise of 0.064 (a 2-split mean's 0.045 on
  the course's data; more above a loss of 0.7), or Student's t noise of the same spread;
- with logged seconds, one call's seconds are a random forest of the trials' own seconds (in
  log), times a speed factor, times a log-normal factor (sigma 0.25) per call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tuner.config.space import SearchSpace

# One split loss's noise on the course's data: a 2-split mean's standard deviation is 0.045.
SPLIT_NOISE = 0.064
CALL_SPREAD = 0.25  # log-normal sigma of one call's seconds around the forest's
TRIAL = re.compile(r"^trial\s+\d+\s+(?P<point>(?:\S+=\S+ )+)\s*loss (?P<loss>\S+) ± (?P<std>\S+)")
RACED = re.compile(r"\(raced: (\d+) splits\)")
SECONDS = re.compile(r"\s(?P<sec>[\d.]+)s$")  # a trial line's own seconds, at its end


def trial_lines(
    paths: Sequence[Path], names: Sequence[str]
) -> Iterator[tuple[dict[str, float], str, re.Match[str]]]:
    """Each trial line of the logs whose point has exactly `names`: (its values, the line,
    the TRIAL match)."""
    for path in paths:
        for line in path.read_text().splitlines():
            match = TRIAL.match(line)
            if not match:
                continue
            params = dict(item.split("=") for item in match["point"].split())
            if sorted(params) == sorted(names):
                yield {k: float(v) for k, v in params.items()}, line, match


@dataclass(frozen=True)
class Logged:
    """One distinct logged point, every line of it merged (or one line, before merging)."""

    params: dict[str, float]
    loss: float  # the mean over all its logged splits
    std: float  # the root mean of its lines' split variances
    splits: int  # its logged splits, summed
    seconds: float | None  # the mean of its lines' own seconds (None: none logged)


def logged(paths: Sequence[Path], names: Sequence[str]) -> list[Logged]:
    """Each distinct point of the logs' trial lines over exactly `names`, in first-seen order.

    A point logged more than once (a seed's random start-up points recur in every log of that
    seed) gets all its lines merged, its losses weighted by their splits, so the surrogate does
    not depend on which log comes first."""
    lines: dict[tuple[float, ...], list[Logged]] = {}
    for params, line, match in trial_lines(paths, names):
        raced, seconds = RACED.search(line), SECONDS.search(line)
        splits = int(raced.group(1)) if raced else 2
        sec = float(seconds["sec"]) if seconds else None
        entry = Logged(params, float(match["loss"]), float(match["std"]), splits, sec)
        lines.setdefault(tuple(params[k] for k in names), []).append(entry)
    return [_merged(entries) for entries in lines.values()]


def _merged(entries: list[Logged]) -> Logged:
    splits = np.array([e.splits for e in entries], dtype="float64")
    loss = float(np.average([e.loss for e in entries], weights=splits))
    std = float(np.sqrt(np.mean([e.std**2 for e in entries])))
    seconds = [e.seconds for e in entries if e.seconds is not None]
    mean_seconds = float(np.mean(seconds)) if seconds else None
    return Logged(entries[0].params, loss, std, int(splits.sum()), mean_seconds)


@dataclass
class Surrogate:
    """True loss and call seconds of a unit point; noisy split losses and call times."""

    space: SearchSpace
    loss_forest: Any
    time_forest: Any | None = None  # None: no seconds were logged, `call` is not known
    speed: float = 1.0
    df: float | None = None  # Student's t degrees of freedom of the split noise; None: Gaussian

    def _row(self, point: dict[str, float]) -> np.ndarray:
        return np.array([[float(point[n]) for n in self.space.names]])

    def truth(self, point: dict[str, float]) -> float:
        """The point's true loss."""
        return float(np.exp(self.loss_forest.predict(self._row(point))[0]))

    def splits(self, point: dict[str, float], n: int, rng: np.random.Generator) -> list[float]:
        """n split losses of the point, each its true loss plus noise (at least 0.3)."""
        truth = self.truth(point)
        noise = SPLIT_NOISE * max(1.0, truth / 0.7)
        if self.df is None:
            draws = rng.normal(0, 1, n)
        else:  # Student's t scaled to unit variance: heavier tails, the same spread
            draws = rng.standard_t(self.df, n) * math.sqrt((self.df - 2) / self.df)
        return [float(max(0.3, truth + noise * d)) for d in draws]

    def call(self, point: dict[str, float], rng: np.random.Generator) -> float:
        """Seconds of one scoring call of the point."""
        if self.time_forest is None:
            raise ValueError("no seconds were logged: the surrogate has no call times")
        mean = float(np.exp(self.time_forest.predict(self._row(point))[0]))
        return self.speed * mean * float(np.exp(rng.normal(0, CALL_SPREAD)))


def fitted(
    space: SearchSpace,
    params: Sequence[dict[str, float]],
    losses: Sequence[float],
    seconds: Sequence[float] | None = None,
    speed: float = 1.0,
    df: float | None = None,
) -> Surrogate:
    """The surrogate of logged points (`params`), their mean `losses` and their `seconds`."""
    from sklearn.ensemble import RandomForestRegressor

    units = np.array([[space.point(p)[n] for n in space.names] for p in params])

    def forest(values: Sequence[float]) -> Any:
        model = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=0)
        return model.fit(units, np.log(values))

    times = forest(seconds) if seconds is not None else None
    return Surrogate(space, forest(losses), times, speed, df)

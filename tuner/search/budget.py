"""The time budget: when a search stops starting trials, and how much final re-score fits.

With `search.time_budget`, a whole `tuner search` run, its final re-score and confirmation
included, aims to end within it. Trials start while the time left is more than those are
expected to take (from the finalists' own trial times, at most `search.final_share` of the
budget), and racing rounds while they are expected to end before that time (`Deadline.room`);
at the end the re-score and confirmation are cut to the scoring calls that fit in the time left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tuner.config.schema import Config, SearchConfig
from tuner.search.final import (
    candidates,
    confirm_chunks,
    confirm_seeds,
    final_chunks,
    final_seeds,
    holds,
)
from tuner.study.store import TrialRecord, TrialState
from tuner.study.winner import winner

# Fewer fresh splits per finalist than this (when more are configured) and the final re-score
# drops its last finalists instead: a mean on 2 fresh splits chooses worse than the search did.
MIN_SPLITS = 4

Reserve = Callable[[Sequence[TrialRecord]], float]


@dataclass(frozen=True)
class Deadline:
    """When this run stops starting trials: `seconds` after it began, less a `reserve` kept
    for what runs after the trials (the final re-score), given the trials so far; and, with
    `end` (the seconds of that final part alone), how long a racing round may take (`room`).

    The clock is this process's, from the start of this `tuner search` (or `tuner worker`) run;
    a resumed search gets the whole budget again.
    """

    seconds: float | None
    started: float = field(default_factory=time.monotonic)
    reserve: Reserve | None = None
    end: Reserve | None = None  # the seconds of the end alone (`end_seconds`), for `room`

    def left(self) -> float | None:
        """Seconds of the budget left (None without one)."""
        if self.seconds is None:
            return None
        return max(0.0, self.seconds - (time.monotonic() - self.started))

    def passed(self, trials: Sequence[TrialRecord] = ()) -> bool:
        """True once no trial should start (never without a budget)."""
        left = self.left()
        if left is None:
            return False
        kept = self.reserve(trials) if self.reserve is not None and trials else 0.0
        return left <= kept

    def room(self, trials: Sequence[TrialRecord]) -> float | None:
        """Seconds that work starting now (a racing round) may take and still end before the
        time kept for the end; None without a budget, an `end`, or trials to cost it from."""
        left = self.left()
        if left is None or self.end is None or not trials:
            return None
        return left - self.end(trials)


def call_seconds(trial: TrialRecord, splits: int) -> float:
    """Seconds of one scoring call (`splits` splits) of `trial`: the mean over the calls it
    made, its racing rounds included (a call's epochs vary with its splits: on the course's
    data one first call ran 22% under the re-score's calls); 0 when unknown."""
    if not trial.seconds:
        return 0.0
    if not trial.split_losses:
        return trial.seconds
    total = trial.seconds + (trial.race_seconds or 0.0)
    return total / len(trial.split_losses) * splits


@dataclass(frozen=True)
class Pending:
    """What the final re-score and confirmation still have to do, and their seconds."""

    finalists: int  # the finalists there are
    undone: tuple[float, ...]  # of them, those not yet re-scored: seconds of one call each
    per: int  # calls per finalist
    confirm: int  # calls of the confirmation still to do
    slowest: float  # seconds of one call of the slowest finalist (the winner may be it)

    @property
    def seconds(self) -> float:
        """Expected seconds of what is still to do."""
        return self.per * sum(self.undone) + self.confirm * self.slowest


def pending(config: Config, trials: Sequence[TrialRecord]) -> Pending:
    """The final re-score's and confirmation's calls still to do, as configured.

    Each finalist costs its own call's seconds; one of unknown seconds costs the slowest's.
    """
    search = config.search
    chosen = candidates(trials, search.final_candidates)
    sizes = final_chunks(config)
    seeds = final_seeds(config, trials) if chosen else []
    splits = config.evaluation.splits
    slowest = max((call_seconds(t, splits) for t in chosen), default=0.0)
    undone = [t for t in chosen if not holds(t.final, seeds, sum(sizes))]
    confirm = len(confirm_chunks(config)) if search.confirm_splits > 0 and len(chosen) > 1 else 0
    if confirm and not undone:
        found = winner(trials)
        seeds = confirm_seeds(config, trials)
        if found is None or holds(found.trial.confirm, seeds, search.confirm_splits):
            confirm = 0
    costs = tuple(call_seconds(t, splits) or slowest for t in undone)
    return Pending(len(chosen), costs, len(sizes), confirm, slowest)


def _kept(config: Config, trials: Sequence[TrialRecord], baseline_seconds: float) -> float | None:
    """`end_seconds`, or None when nothing is kept (no time budget or no finalists)."""
    search = config.search
    if search.time_budget is None:
        return None
    todo = pending(config, trials)
    if todo.finalists == 0:
        return None
    return min(todo.seconds + baseline_seconds, search.final_share * search.time_budget)


def end_seconds(
    config: Config, trials: Sequence[TrialRecord], baseline_seconds: float = 0.0
) -> float:
    """Seconds a search keeps for what runs after its trials (0 without a time budget or
    finalists): the final re-score and confirmation as configured and the split-difficulty
    baseline's `baseline_seconds`, at most `search.final_share` of the budget."""
    return _kept(config, trials, baseline_seconds) or 0.0


def final_reserve(
    config: Config, trials: Sequence[TrialRecord], baseline_seconds: float = 0.0
) -> float:
    """Seconds a search keeps for its end (`end_seconds`) plus a typical trial's seconds, so
    that the last trial to start is expected to end before the end (0 when nothing is kept)."""
    final = _kept(config, trials, baseline_seconds)
    if final is None:
        return 0.0
    seconds = [t.seconds for t in trials if t.state == TrialState.COMPLETE and t.seconds]
    return final + (float(np.median(seconds)) if seconds else 0.0)


def plan(
    left: float, costs: Sequence[float], per: int, confirm: int, splits: int
) -> tuple[int, int, int]:
    """(finalists, calls each, confirmation calls) that fit in `left` seconds, for finalists
    whose one call takes `costs` seconds each (best first), `per` calls each, `confirm` calls
    of confirmation (at the slowest finalist's seconds) when two or more are compared, and
    `splits` splits a call.

    All finalists while each keeps `MIN_SPLITS` fresh splits; else fewer finalists with more
    calls each; at the least the best one alone on what fits (2 splits or more); else none.
    """

    def cost(n: int, each: int) -> float:
        confirmed = min(confirm, each) * max(costs[:n]) if n > 1 else 0.0
        return each * sum(costs[:n]) + confirmed

    least = min(per, math.ceil(MIN_SPLITS / splits))
    for n in range(len(costs), 0, -1):
        each = max((e for e in range(1, per + 1) if cost(n, e) <= left), default=0)
        if each >= least:
            rest = left - each * sum(costs[:n])
            return n, each, (min(confirm, int(rest // max(costs[:n]))) if n > 1 else 0)
    each = min(per, int(left // costs[0])) if costs else 0
    return (1, each, 0) if each * splits >= 2 else (0, 0, 0)


def fit_final(
    config: Config, trials: Sequence[TrialRecord], left: float | None, baseline_seconds: float = 0.0
) -> Config:
    """The config with the final re-score and confirmation cut to the calls that fit in
    `left` seconds, less the split-difficulty baseline's expected `baseline_seconds` (it runs
    after them): as it is without a budget, when they fit, or when some finalist already
    holds its re-score (a resumed search: a cut would throw it away)."""
    search, splits = config.search, config.evaluation.splits
    todo = pending(config, trials)
    if left is None or todo.slowest <= 0:
        return config
    left = max(0.0, left - baseline_seconds)
    if todo.seconds <= left or len(todo.undone) < todo.finalists:
        return config
    count, each, confirm = plan(left, todo.undone, todo.per, todo.confirm, splits)
    cut = search.model_copy(
        update={
            "final_candidates": count,
            "final_splits": min(search.final_splits, each * splits),
            "confirm_splits": min(search.confirm_splits, confirm * splits),
        }
    )
    return config.model_copy(update={"search": cut})


def describe_cut(configured: SearchConfig, fitted: SearchConfig, left: float) -> str:
    """The line saying how the time budget cut the final re-score."""
    was = (
        f"configured: {configured.final_candidates} on {configured.final_splits}, "
        f"confirmation {configured.confirm_splits}"
    )
    if configured.final_share < 1:
        was += "; a larger search.final_share keeps more time for it"
    if fitted.final_candidates == 0:
        return f"time budget: {left:.0f} s left, too little to re-score the finalists ({was})"
    confirm = ""
    if fitted.final_candidates > 1 and fitted.confirm_splits > 0:
        confirm = f", confirmation on {fitted.confirm_splits}"
    return (
        f"time budget: {left:.0f} s left, the final re-score cut to "
        f"{fitted.final_candidates} finalist(s) on {fitted.final_splits} splits{confirm} ({was})"
    )

"""The time budget: when a search stops starting trials, and how much final re-score fits.

With `search.time_budget`, a whole `tuner search` run, its final re-score and confirmation
included, aims to end within it. Trials start while the time left is more than those are
expected to take (from the finalists' own trial times, at most `search.final_share` of the
budget); at the end they are cut to the scoring calls that fit in the time left.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tuner.config import Config, SearchConfig
from tuner.rescoring import candidates, confirm_chunks, final_chunks
from tuner.store import TrialRecord

# Fewer calls per finalist than this (when more are configured) and the final re-score drops
# its last finalists instead: a mean on 2 fresh splits chooses worse than the search did.
MIN_CALLS = 2

Reserve = Callable[[Sequence[TrialRecord]], float]


@dataclass(frozen=True)
class Deadline:
    """When this run stops starting trials: `seconds` after it began, less a `reserve` kept
    for what runs after the trials (the final re-score), given the trials so far.

    The clock is this process's, from the start of this `tuner search` (or `tuner worker`) run;
    a resumed search gets the whole budget again.
    """

    seconds: float | None
    started: float = field(default_factory=time.monotonic)
    reserve: Reserve | None = None

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


def call_seconds(trials: Sequence[TrialRecord]) -> float:
    """Seconds of one scoring call (`evaluation.splits` splits) of the slowest of `trials`:
    a trial's own seconds, racing rounds apart."""
    return max((t.seconds or 0.0 for t in trials), default=0.0)


def final_calls(config: Config) -> tuple[int, int]:
    """Scoring calls per finalist and for the confirmation, as configured."""
    confirm = len(confirm_chunks(config)) if config.search.confirm_splits > 0 else 0
    return len(final_chunks(config)), confirm


def final_reserve(config: Config, trials: Sequence[TrialRecord]) -> float:
    """Seconds a search keeps for its final re-score and confirmation: their expected time
    as configured, at most `search.final_share` of the time budget (0 without one)."""
    search = config.search
    chosen = candidates(trials, search.final_candidates)
    if search.time_budget is None or not chosen:
        return 0.0
    per, confirm = final_calls(config)
    calls = len(chosen) * per + (confirm if len(chosen) >= 2 else 0)
    return min(calls * call_seconds(chosen), search.final_share * search.time_budget)


def plan(calls: int, count: int, per: int, confirm: bool) -> tuple[int, int]:
    """(finalists, calls each) that fit in `calls` scoring calls, for `count` finalists of
    `per` calls each (and as many again for the confirmation when two or more are compared).

    All finalists while each gets `MIN_CALLS` (or `per`, if fewer); else fewer finalists with
    more calls each; at the least one finalist on what fits; (0, 0) when not one call does.
    """
    least = min(per, MIN_CALLS)
    for n in range(count, 0, -1):
        each = min(per, calls // (n + (1 if confirm and n >= 2 else 0)))
        if each >= least:
            return n, each
    return (1, min(per, calls)) if calls >= 1 and count >= 1 else (0, 0)


def fit_final(config: Config, trials: Sequence[TrialRecord], left: float | None) -> Config:
    """The config with the final re-score and confirmation cut to the calls that fit in
    `left` seconds: as it is without a budget or when they fit."""
    search, splits = config.search, config.evaluation.splits
    chosen = candidates(trials, search.final_candidates)
    if left is None or not chosen:
        return config
    per, confirm = final_calls(config)
    seconds = call_seconds(chosen)
    needed = len(chosen) * per + (confirm if len(chosen) >= 2 else 0)
    if seconds <= 0 or needed * seconds <= left:
        return config
    count, each = plan(int(left // seconds), len(chosen), per, confirm > 0)
    cut = search.model_copy(
        update={
            "final_candidates": count,
            "final_splits": min(search.final_splits, each * splits),
            "confirm_splits": min(search.confirm_splits, each * splits),
        }
    )
    return config.model_copy(update={"search": cut})


def describe_cut(configured: SearchConfig, fitted: SearchConfig, left: float) -> str:
    """The line saying how the time budget cut the final re-score."""
    was = (
        f"configured: {configured.final_candidates} on {configured.final_splits}, "
        f"confirmation {configured.confirm_splits}; search.final_share keeps more time"
    )
    if fitted.final_candidates == 0:
        return (
            f"time budget: {left:.0f} s left, too little to re-score the finalists; the "
            f"winner is the search-time best ({was})"
        )
    confirm = f", confirmation on {fitted.confirm_splits}" if fitted.final_candidates > 1 else ""
    return (
        f"time budget: {left:.0f} s left, the final re-score cut to "
        f"{fitted.final_candidates} finalist(s) on {fitted.final_splits} splits{confirm} ({was})"
    )

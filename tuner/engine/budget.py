"""The time budget, and the search's end (final.py) cut to at most `search.final_share` of the
run's wall time: fewer finalists, or fewer splits each; a lone finalist is confirmed, not
re-scored."""

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tuner.config.schema import Config
from tuner.engine.final import (
    alone,
    candidates,
    confirm_chunks,
    confirm_holds,
    final_chunks,
    final_seeds,
    holds,
)
from tuner.study.store import TrialRecord, TrialState
from tuner.study.winner import winner

# Fewer fresh splits per finalist than this and the end drops finalists instead: a mean on 2
# fresh splits chooses worse than the search did.
MIN_SPLITS = 4
# The fewest confirmation splits worth a call: one split gives a loss but no standard error.
MIN_CONFIRM = 2

Reserve = Callable[[Sequence[TrialRecord]], float]


@dataclass(frozen=True)
class Deadline:
    """When this run stops starting trials: `seconds` after it began (a resumed search gets
    them all again), less a `reserve` for the end of the search, given the trials so far."""

    seconds: float | None
    started: float = field(default_factory=time.monotonic)
    reserve: Reserve | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float | None:
        """Seconds of the budget left (None without one)."""
        return None if self.seconds is None else max(0.0, self.seconds - self.elapsed())

    def passed(self, trials: Sequence[TrialRecord] = ()) -> bool:
        """True once no trial should start (never without a budget)."""
        left = self.left()
        if left is None:
            return False
        kept = self.reserve(trials) if self.reserve is not None and trials else 0.0
        return left <= kept


def call_seconds(trial: TrialRecord, splits: int) -> float:
    """Seconds of one scoring call (`splits` splits) of `trial`, from its own; 0 if unknown."""
    return trial.seconds / max(1, len(trial.split_losses)) * splits if trial.seconds else 0.0


@dataclass(frozen=True)
class Pending:
    """What the end still has to do, and its seconds."""

    finalists: int  # the finalists there are
    undone: tuple[float, ...]  # of them, those not yet re-scored: seconds of one call each
    per: int  # calls per finalist
    confirm: int  # calls of the confirmation still to do (one outer split of an ensemble each)
    slowest: float  # seconds of one call of the slowest finalist (the winner may be it)
    alone: bool = False  # a lone finalist, confirmed rather than re-scored (`plan`)

    @property
    def seconds(self) -> float:
        rescore = 0.0 if self.alone else self.per * sum(self.undone)
        return rescore + self.confirm * self.slowest


def pending(config: Config, trials: Sequence[TrialRecord]) -> Pending:
    """The end's calls still to do, as configured (an unknown finalist costs the slowest's);
    a lone finalist's are its confirmation's (`alone`)."""
    search = config.search
    chosen = candidates(trials, search.final_candidates)
    sizes = final_chunks(config)
    splits = config.evaluation.splits
    slowest = max((call_seconds(t, splits) for t in chosen), default=0.0)
    if len(chosen) == 1 and search.confirm_splits > 0:
        lone = alone(config)
        confirm = 0 if confirm_holds(lone, trials, chosen[0]) else len(confirm_chunks(lone))
        return Pending(1, (slowest,), len(sizes), confirm, slowest, alone=True)
    seeds = final_seeds(config, trials) if chosen else []
    undone = [t for t in chosen if not holds(t.final, seeds, sum(sizes))]
    confirm = len(confirm_chunks(config)) if chosen else 0
    if confirm and not undone:
        found = winner(trials)
        if found is None or confirm_holds(config, trials, found.trial):
            confirm = 0
    costs = tuple(call_seconds(t, splits) or slowest for t in undone)
    return Pending(len(chosen), costs, len(sizes), confirm, slowest)


def final_reserve(config: Config, trials: Sequence[TrialRecord]) -> float:
    """Seconds a time budget keeps for its end (at most `final_share`) and a typical trial."""
    search = config.search
    todo = pending(config, trials)
    if search.time_budget is None or todo.finalists == 0:
        return 0.0
    end = min(todo.seconds, search.final_share * search.time_budget)
    seconds = [t.seconds for t in trials if t.state == TrialState.COMPLETE and t.seconds]
    return end + (float(np.median(seconds)) if seconds else 0.0)


def end_room(config: Config, deadline: Deadline) -> float:
    """Seconds the end may take now: the budget's rest, or its `final_share` of the run."""
    left = deadline.left()
    if left is not None:
        return left
    share = config.search.final_share
    return share / (1.0 - share) * deadline.elapsed()


def plan(
    left: float, costs: Sequence[float], per: int, confirm: int, splits: int
) -> tuple[int, int, int]:
    """(finalists, calls each, confirmation calls) that fit in `left` seconds, for finalists
    whose call costs `costs` (best first), at most `per` calls each, and at most `confirm`
    calls of the winner's confirmation (at the slowest's cost): all finalists while each keeps
    `MIN_SPLITS` fresh splits and the confirmation as many calls as a finalist, else fewer,
    the calls left going to the confirmation (`MIN_CONFIRM` calls or none); else the best
    alone (`plan_alone`)."""

    def cost(n: int, each: int) -> float:
        return each * sum(costs[:n]) + min(confirm, each) * max(costs[:n])

    def confirmed(n: int, each: int) -> int:
        calls = min(confirm, int((left - each * sum(costs[:n])) // max(costs[:n])))
        return calls if calls >= min(confirm, MIN_CONFIRM) else 0

    least = min(per, math.ceil(MIN_SPLITS / splits))
    for n in range(len(costs), 1, -1):
        each = max((e for e in range(1, per + 1) if cost(n, e) <= left), default=0)
        if each >= least:
            return n, each, confirmed(n, each)
    return plan_alone(left, costs[0], per, confirm, splits) if costs else (0, 0, 0)


def plan_alone(
    left: float, cost: float, per: int, confirm: int, splits: int
) -> tuple[int, int, int]:
    """`plan` for the best finalist alone, a call costing `cost`: its re-score would choose
    nothing, so the calls go to its confirmation, the loss it reports of what is exported;
    only where `MIN_CONFIRM` calls of that do not fit is it re-scored (on 2 splits or more),
    for a loss on splits that did not choose it."""
    calls = int(left // cost)
    if confirm and min(confirm, calls) >= min(confirm, MIN_CONFIRM):
        return 1, 0, min(confirm, calls)
    each = min(per, calls)
    return (1, each, 0) if each * splits >= 2 else (0, 0, 0)


def fit_final(config: Config, trials: Sequence[TrialRecord], left: float) -> Config:
    """The config with the end cut to fit `left` seconds (uncut once a finalist is re-scored);
    a lone finalist's as `plan_alone` gives it (as configured once its confirmation is held)."""
    todo = pending(config, trials)
    if todo.alone and (todo.confirm == 0 or todo.slowest <= 0):
        return alone(config)
    whole = todo.seconds <= left and not todo.alone
    if todo.slowest <= 0 or whole or len(todo.undone) < todo.finalists:
        return config
    return _cut(config, *plan(left, todo.undone, todo.per, todo.confirm, config.evaluation.splits))


def _cut(config: Config, count: int, each: int, confirm: int) -> Config:
    """`config` with `count` finalists on `each` calls (none: a lone one is not re-scored) and
    `confirm` confirmation calls."""
    search, splits = config.search, config.evaluation.splits
    confirmed = min(search.confirm_splits, confirm)  # one outer split a call
    if count == 1 and each == 0:
        return alone(config, confirmed)
    final = max(2, min(search.final_splits, each * splits))
    cut = {"final_candidates": count, "final_splits": final, "confirm_splits": confirmed}
    return config.model_copy(update={"search": search.model_copy(update=cut)})


def planned_end(config: Config) -> Config:
    """The end as planned at the start: without a time budget, as if a call cost one trial."""
    search = config.search
    if search.time_budget is not None or search.final_candidates == 0:
        return config
    calls = search.final_share / (1.0 - search.final_share) * search.budget
    per, confirm = len(final_chunks(config)), len(confirm_chunks(config))
    costs = [1.0] * search.final_candidates
    return _cut(config, *plan(calls, costs, per, confirm, config.evaluation.splits))


def describe_end(config: Config) -> str:
    """The line that says, when a search starts, what its end will do."""
    search, planned = config.search, planned_end(config).search
    share = f"at most {search.final_share:.0%} of the run"
    if planned.final_candidates == 0:
        return "end: no re-score (search.final_candidates is 0, or the budget is too small)"
    upto = "up to " if search.time_budget is not None else ""
    members = config.evaluation.splits
    what = f"an ensemble of {members} networks" if members > 1 else "a network"
    if planned.final_candidates == 1 and planned.confirm_splits > 0:  # `plan_alone`
        text = f"end: the best trial confirmed as exported ({what}) on {upto}"
        return f"{text}{planned.confirm_splits} fresh splits; {share}"
    text = f"end: {upto}{planned.final_candidates} finalist(s) re-scored on fresh splits"
    text += f" ({upto}{planned.final_splits} each)"
    if planned.confirm_splits > 0:
        text += f", the winner (as exported: {what}) confirmed on {upto}"
        text += f"{planned.confirm_splits} more"
    return f"{text}; {share}"

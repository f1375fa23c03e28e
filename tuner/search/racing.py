"""Racing: a trial that ranks on top after its own splits is scored on rounds of extra
splits, re-ranked after each; poor points are never re-run. Seeds: see rescoring.py."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np

from tuner.config.schema import Config, Scalar
from tuner.errors import TrialFailed
from tuner.search.final import RACE_TAG, Objective, SeedRange, fresh_seed, trial_ranges
from tuner.study.adjustment import applied, fit
from tuner.study.store import Storage, StudyRecord, TrialRecord
from tuner.study.winner import ranked
from tuner.training.evaluate import Score

# Seconds that a racing round starting now may take and still end before the time a time
# budget keeps for the final re-score (budget.Deadline.room); None: no such limit.
Room = Callable[[Sequence[TrialRecord]], float | None]


def race_seed(
    search_seed: int, trial_seed: int, j: int, splits: int, used: Sequence[SeedRange]
) -> int:
    """The seed of racing round j of the trial with seed `trial_seed`.

    Each trial races on its own splits: rounds shared by every raced trial would shift all of
    them alike (an easy split makes every raced point look better than the others).
    """
    return fresh_seed([search_seed, RACE_TAG, trial_seed, j], splits, used)


def _appended(score: Score, more: Score, seed: int) -> Score:
    losses = score.split_losses + more.split_losses
    return replace(
        score,
        loss=float(np.mean(losses)),
        loss_std=float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0,
        split_losses=losses,
        epochs=score.epochs + more.epochs,
        race_seeds=(*score.race_seeds, seed),
        race_seconds=score.race_seconds + more.seconds,
        baselines=_joined(score, more),
    )


def _joined(score: Score, more: Score) -> tuple[float, ...]:
    """The baselines of both, when both have one for each split; else none."""
    complete = all(len(s.baselines) == len(s.split_losses) for s in (score, more))
    return score.baselines + more.baselines if complete else ()


def on_top(others: Sequence[float], loss: float, top: int, start: int) -> bool:
    """Whether `loss` ranks in the top `top` of the `others` losses, once at least `start`
    (and `top`) others have completed.

    tuner races with `start` = `search.init_points`: the random start-up points are not raced
    (on top of a few random points is no contender, and under a time budget their rounds cost
    guided trials; README's Racing has the figures, benchmarks/racing_budget.py the surrogate).
    """
    return len(others) >= max(top, start) and sum(x <= loss for x in others) < top


class Racer:
    """An objective that races: a trial that ranks in the current top `search.race_top` (of
    at least `search.init_points` and `race_top` other completed trials) after its own splits
    gets rounds of `evaluation.splits` extra splits, re-ranked after each, until it has
    `search.race_splits`.
    Poor points are never re-run.

    The rounds run inside the trial (it stays running, with its heartbeat), so the study sees
    one result per trial and the budget counts trials, not rounds. A round that fails fails the
    trial, as a failure on any of its splits would have. Under a time budget (`room`), a round
    expected to run into the time kept for the final re-score is not started: the final
    re-scores the trial anyway if it ranks among the finalists. That time is priced on the
    finalists so far: the trial being raced, still running, is not one of them yet.
    """

    def __init__(
        self,
        objective: Objective,
        config: Config,
        storage: Storage,
        study: StudyRecord,
        room: Room | None = None,
    ) -> None:
        self._objective = objective
        self._config = config
        self._storage = storage
        self._study = study
        self._room = room

    def _fits(self, trials: Sequence[TrialRecord], score: Score) -> bool:
        """Whether one more round, at the mean seconds of the trial's calls so far, ends
        before the time kept for the end (always without a time budget)."""
        room = self._room(trials) if self._room is not None else None
        calls = 1 + len(score.race_seeds)
        return room is None or room >= (score.seconds + score.race_seconds) / calls

    def _ranks_top(self, trials: Sequence[TrialRecord], score: Score, seed: int) -> bool:
        """`on_top` among the completed trials, from `search.init_points` of them on; compared
        adjusted for split difficulty (adjustment.py) when the others are."""
        search = self._config.search
        found = fit(trials)  # passed on: ranked() on raw trials would fit it again
        others = [t.loss for t in ranked(applied(trials, found))]
        loss = score.loss
        if found is not None and len(score.baselines) == len(score.split_losses):
            loss = found.loss(score.split_losses, score.baselines, seed)
        return on_top(others, loss, search.race_top, search.init_points)

    def __call__(self, params: Mapping[str, Scalar], seed: int) -> Score:
        """The trial's score on its own splits, then on racing rounds while it stays on top."""
        score = self._objective(params, seed)
        search, splits = self._config.search, self._config.evaluation.splits
        while len(score.split_losses) < search.race_splits:
            trials = self._storage.trials(self._study)
            if not self._ranks_top(trials, score, seed) or not self._fits(trials, score):
                break
            j = len(score.race_seeds) + 1
            used = trial_ranges(trials, splits)
            used += [(s, s + splits) for s in score.race_seeds]
            round_seed = race_seed(search.seed, seed, j, splits, used)
            try:
                more = self._objective(params, round_seed)
            except TrialFailed as exc:
                message = f"on racing round {j} (seed {round_seed}): {exc.message}"
                raise TrialFailed(exc.kind, message) from exc
            score = _appended(score, more, round_seed)
        return score


def racing(
    objective: Objective,
    config: Config,
    storage: Storage,
    study: StudyRecord,
    room: Room | None = None,
) -> Objective:
    """The objective with racing when `search.race_top` is above 0, else as it is; `room`
    bounds its rounds under a time budget (see Racer)."""
    if config.search.race_top <= 0:
        return objective
    return Racer(objective, config, storage, study, room)

"""Honest scores: racing promising trials on extra splits, re-scoring the finalists, and
scoring the winner again on confirmation splits.

Seeds. Trial k's splits and weights come from `SeedSequence([search.seed, k])` (asking.py);
racing round j of the trial with seed s uses `SeedSequence([search.seed, RACE_TAG, s, j,
attempt])`, chunk c of the final re-score `SeedSequence([search.seed, FINAL_TAG, c,
attempt])` and chunk c of the confirmation `SeedSequence([search.seed, CONFIRM_TAG, c,
attempt])`.
Different entropy gives independent draws, and `fresh_seed` makes the separation exact: a seed
`s` scored on `n` splits uses the split seed `s` and the weight seeds `s .. s+n-1`, and a fresh
seed's range must not meet the range of any seed the study already used (otherwise the next
`attempt` is drawn)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Protocol

import numpy as np

from tuner.config import Config, Scalar
from tuner.difficulty import Difficulty, reference_seed, slope
from tuner.errors import SearchInterrupted, TrialFailed, UsageError
from tuner.evaluate import Score
from tuner.signals import Signals
from tuner.store import FinalScore, Storage, StudyRecord, TrialRecord
from tuner.winner import finalists, ranked, reported_score, winner

RACE_TAG = 0x72616365  # "race"
FINAL_TAG = 0x66696E61  # "fina"
CONFIRM_TAG = 0x636F6E66  # "conf"

Objective = Callable[[Mapping[str, Scalar], int], Score]
FinalObjective = Callable[[Mapping[str, Scalar], int, int], Score]  # params, seed, splits
Baseline = Callable[[int, int], tuple[float, ...]]  # seed, splits -> the baseline's split losses
SeedRange = tuple[int, int]  # [first, last + 1) of the seeds a scoring used


def fresh_seed(entropy: Sequence[int], width: int, used: Sequence[SeedRange]) -> int:
    """The first seed drawn from `entropy` whose range [seed, seed+width) meets no used range."""
    for attempt in itertools.count():
        state = np.random.SeedSequence([*entropy, attempt]).generate_state(1)[0]
        seed = int(state >> 1)
        if all(seed + width <= low or high <= seed for low, high in used):
            return seed
    raise AssertionError("unreachable")  # pragma: no cover


def trial_ranges(trials: Sequence[TrialRecord], splits: int) -> list[SeedRange]:
    """The seed ranges the search used: every trial's own seed and its racing rounds' seeds."""
    used: list[SeedRange] = []
    for trial in trials:
        own = max(splits, len(trial.split_losses) - splits * len(trial.race_seeds))
        used.append((trial.seed, trial.seed + own))
        used += [(seed, seed + splits) for seed in trial.race_seeds]
    return used


def race_seed(
    search_seed: int, trial_seed: int, j: int, splits: int, used: Sequence[SeedRange]
) -> int:
    """The seed of racing round j of the trial with seed `trial_seed`.

    Each trial races on its own splits: rounds shared by every raced trial would shift all of
    them alike (an easy split makes every raced point look better than the others).
    """
    return fresh_seed([search_seed, RACE_TAG, trial_seed, j], splits, used)


def chunks(total: int, per: int) -> list[int]:
    """Split counts of calls of `per` splits each, and the rest in the last one: one call on
    all the splits would train until its slowest split stops, every split paying for it."""
    whole, rest = divmod(total, per)
    return [per] * whole + ([rest] if rest else [])


def final_chunks(config: Config) -> list[int]:
    """The split counts of the final re-score's calls."""
    return chunks(config.search.final_splits, config.evaluation.splits)


def confirm_chunks(config: Config) -> list[int]:
    """The split counts of the confirmation's calls."""
    return chunks(config.search.confirm_splits, config.evaluation.splits)


def _chunk_seeds(entropy: Sequence[int], sizes: Sequence[int], used: list[SeedRange]) -> list[int]:
    """Fresh seeds for chunks of `sizes` splits; their ranges are added to `used`."""
    seeds: list[int] = []
    for c, size in enumerate(sizes):
        seeds.append(fresh_seed([*entropy, c], size, used))
        used.append((seeds[-1], seeds[-1] + size))
    return seeds


def final_seeds(config: Config, trials: Sequence[TrialRecord]) -> list[int]:
    """The seeds of the final re-score's chunks: apart from every seed the search used."""
    used = trial_ranges(trials, config.evaluation.splits)
    return _chunk_seeds([config.search.seed, FINAL_TAG], final_chunks(config), used)


def confirm_seeds(config: Config, trials: Sequence[TrialRecord]) -> list[int]:
    """The seeds of the confirmation's chunks: apart from the search's and the final ones."""
    used = trial_ranges(trials, config.evaluation.splits)
    _chunk_seeds([config.search.seed, FINAL_TAG], final_chunks(config), used)
    return _chunk_seeds([config.search.seed, CONFIRM_TAG], confirm_chunks(config), used)


# --- racing ----------------------------------------------------------------------------------


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
    )


class Racer:
    """An objective that races: a trial that ranks in the current top `search.race_top` (of
    at least `race_top` other completed trials) after its own splits gets rounds of
    `evaluation.splits` extra splits, re-ranked after each, until it has `search.race_splits`.
    Poor points are never re-run.

    The rounds run inside the trial (it stays running, with its heartbeat), so the study sees
    one result per trial and the budget counts trials, not rounds. A round that fails fails the
    trial, as a failure on any of its splits would have.
    """

    def __init__(
        self, objective: Objective, config: Config, storage: Storage, study: StudyRecord
    ) -> None:
        self._objective = objective
        self._config = config
        self._storage = storage
        self._study = study

    def _ranks_top(self, trials: Sequence[TrialRecord], loss: float) -> bool:
        """True when `loss` ranks in the top `race_top` of at least `race_top` others (the
        first trials are on top of nothing and are not raced for that)."""
        top = self._config.search.race_top
        others = ranked(trials)
        return len(others) >= top and sum(t.loss <= loss for t in others) < top

    def __call__(self, params: Mapping[str, Scalar], seed: int) -> Score:
        """The trial's score on its own splits, then on racing rounds while it stays on top."""
        score = self._objective(params, seed)
        search, splits = self._config.search, self._config.evaluation.splits
        while len(score.split_losses) < search.race_splits:
            trials = self._storage.trials(self._study)
            if not self._ranks_top(trials, score.loss):
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


def racing(objective: Objective, config: Config, storage: Storage, study: StudyRecord) -> Objective:
    """The objective with racing when `search.race_top` is above 0, else as it is."""
    if config.search.race_top <= 0:
        return objective
    return Racer(objective, config, storage, study)


# --- the final re-score ------------------------------------------------------------------


class FinalReporter(Protocol):
    """What the final re-score tells its user (report.py has the terminal one)."""

    def final_started(self, candidates: Sequence[TrialRecord], splits: int, todo: int) -> None: ...

    def final_scored(self, trial: TrialRecord) -> None: ...

    def confirm_started(self, trial: TrialRecord, splits: int) -> None: ...

    def confirm_scored(self, trial: TrialRecord) -> None: ...

    def difficulty_started(self, trial: TrialRecord, splits: int) -> None: ...

    def difficulty_failed(self, error: str) -> None: ...


def candidates(trials: Sequence[TrialRecord], count: int) -> list[TrialRecord]:
    """The finalists: the `count` best distinct completed trials by search-time loss."""
    return ranked(trials)[:count]


def score_final(
    objective: FinalObjective,
    trial: TrialRecord,
    seeds: Sequence[int],
    sizes: Sequence[int],
    interrupted: Callable[[], bool] = lambda: False,
) -> FinalScore:
    """Score a trial's point on fresh splits, chunk by chunk; a failure is recorded."""
    splits, losses, epochs, seconds = sum(sizes), [], [], 0.0
    failed = partial(FinalScore, tuple(seeds), splits)
    for seed, size in zip(seeds, sizes, strict=True):
        try:
            score = objective(trial.params, seed, size)
        except TrialFailed as exc:
            return failed(error_kind=exc.kind, error=exc.message)
        except UsageError:
            raise
        except Exception as exc:  # a bug in one re-score must not lose the search's result
            if interrupted():
                raise
            return failed(error_kind="crashed", error=f"{type(exc).__name__}: {exc}")
        losses += score.split_losses
        epochs += score.epochs
        seconds += score.seconds
    return FinalScore(
        seeds=tuple(seeds),
        splits=splits,
        loss=float(np.mean(losses)),
        loss_std=float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0,
        split_losses=tuple(losses),
        epochs=tuple(epochs),
        seconds=seconds,
    )


def holds(score: FinalScore | None, seeds: Sequence[int], splits: int) -> bool:
    """True when `score` was made on these seeds and splits (a resumed search keeps it)."""
    return score is not None and (score.seeds, score.splits) == (tuple(seeds), splits)


def rescore_final(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: FinalObjective,
    reporter: FinalReporter,
    interrupted: Callable[[], bool] = lambda: False,
    baseline: Baseline | None = None,
) -> None:
    """Re-score the finalists on `search.final_splits` fresh splits, each stored when done,
    then confirm the winner (`confirm_winner`) and, given a `baseline`, measure how hard the
    winner's reported splits are (`adjust_winner`).

    `objective(params, seed, splits)` scores a point on `splits` splits from `seed`. Finalists
    that already hold a re-score on the same seeds and splits (a resumed search) are not redone.
    """
    trials = storage.trials(study)
    chosen = candidates(trials, config.search.final_candidates)
    sizes = final_chunks(config)
    seeds = final_seeds(config, trials)
    todo = [t for t in chosen if not holds(t.final, seeds, sum(sizes))]
    reporter.final_started(chosen, sum(sizes), len(todo))
    for trial in todo:
        final = score_final(objective, trial, seeds, sizes, interrupted)
        reporter.final_scored(storage.record_final(trial, final))
    confirm_winner(config, storage, study, objective, reporter, interrupted)
    if baseline is not None:
        adjust_winner(config, storage, study, baseline, reporter)


def confirm_winner(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: FinalObjective,
    reporter: FinalReporter,
    interrupted: Callable[[], bool] = lambda: False,
) -> None:
    """Score the winner on `search.confirm_splits` more fresh splits, stored as its `confirm`.

    The lowest of several finalists' means on the same splits is biased low; the winner's mean
    on splits that did not choose it is not, and is the loss reported. Done only when the
    winner was chosen among 2 or more finalists (one alone was chosen on other splits), and not
    again when it holds a confirmation on the same seeds and splits.
    """
    trials = storage.trials(study)
    found = winner(trials)
    if config.search.confirm_splits <= 0 or found is None or found.final_candidates < 2:
        return
    sizes = confirm_chunks(config)
    seeds = confirm_seeds(config, trials)
    if holds(found.trial.confirm, seeds, sum(sizes)):
        return
    reporter.confirm_started(found.trial, sum(sizes))
    score = score_final(objective, found.trial, seeds, sizes, interrupted)
    reporter.confirm_scored(storage.record_final(found.trial, score, confirm=True))


def adjust_winner(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    baseline: Baseline,
    reporter: FinalReporter,
) -> None:
    """Measure how hard the splits of the winner's reported score are, against
    `search.difficulty_splits` other fresh splits, stored as its `difficulty` (difficulty.py).

    The slope comes from the finalists' losses on their shared final splits and the winner's on
    its confirmation splits. Not done again when the winner holds one for the same splits; a
    baseline that fails leaves the loss unadjusted.
    """
    count, per = config.search.difficulty_splits, config.evaluation.splits
    trials = storage.trials(study)
    found = winner(trials)
    score = reported_score(found.trial) if found is not None and found.rescored else None
    if count <= 0 or found is None or score is None or not score.ok:
        return
    held = found.trial.difficulty
    if held is not None and held.holds(score.seeds, score.splits, count):
        return
    reporter.difficulty_started(found.trial, count)

    def on(done: FinalScore) -> tuple[float, ...]:
        sizes = zip(done.seeds, chunks(done.splits, per), strict=True)
        return tuple(b for seed, n in sizes for b in baseline(seed, n))

    try:
        group = [t.final for t in finalists(ranked(trials)) if t.final is not None and t.final.ok]
        shared = on(group[0])  # the finalists' final splits are the same
        pairs = [(final.split_losses, shared) for final in group]
        own = shared if score is found.trial.final else on(score)
        if score is not found.trial.final:
            pairs.append((score.split_losses, own))
        fitted, used = slope(pairs)
        seed = reference_seed(config.search.seed)
        reference = np.asarray(baseline(seed, count))
    except Exception as exc:  # the search's result stands without the adjustment
        reporter.difficulty_failed(f"{type(exc).__name__}: {exc}")
        return
    std = float(reference.std(ddof=1)) if count > 1 else 0.0
    measured = Difficulty(
        score.seeds, score.splits, own, seed, count, float(reference.mean()), std, fitted, used
    )
    storage.record_difficulty(found.trial, measured)


def rescore(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: FinalObjective,
    reporter: FinalReporter,
    baseline: Baseline | None = None,
) -> None:
    """`rescore_final` with Ctrl-C and SIGTERM turned into SearchInterrupted.

    The re-scores finished before the signal are kept; a resumed search does the rest.
    """
    signals = Signals()
    try:
        with signals:
            interrupted = lambda: signals.received is not None  # noqa: E731
            rescore_final(config, storage, study, objective, reporter, interrupted, baseline)
    except (KeyboardInterrupt, SearchInterrupted) as exc:
        stop = exc if isinstance(exc, SearchInterrupted) else signals.stopped()
        if stop is exc:
            raise
        raise stop from exc
    except Exception as exc:
        if signals.received is not None:
            raise signals.stopped() from exc
        raise

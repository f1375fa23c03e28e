"""The end of a search: the finalists re-scored on fresh splits, then the winner on confirmation
splits, so that the loss reported is a mean on splits that did not choose it.

Chunk c of the re-score draws its seed from `SeedSequence([search.seed, FINAL_TAG, c, attempt])`
(CONFIRM_TAG for the confirmation); a seed `s` on `n` splits uses the seeds `s .. s+n-1`, and
`fresh_seed` draws the next `attempt` until that range meets no seed the study used."""

import itertools
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import numpy as np

from tuner.config.schema import Config, Scalar
from tuner.engine.reporter import Reporter
from tuner.engine.signals import Signals
from tuner.errors import SearchInterrupted, TrialFailed, UsageError
from tuner.study.store import FinalScore, Storage, StudyRecord, TrialRecord
from tuner.study.winner import finalist_order, winner
from tuner.training.evaluate import Score

FINAL_TAG = 0x66696E61  # "fina"
CONFIRM_TAG = 0x636F6E66  # "conf"

FinalObjective = Callable[[Mapping[str, Scalar], int, int], Score]  # params, seed, splits
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
    """The seed ranges the search used: every trial's own seed and its splits."""
    return [(t.seed, t.seed + max(splits, len(t.split_losses))) for t in trials]


def chunks(total: int, per: int) -> list[int]:
    """Split counts of calls of `per` splits, the rest in the last: one call on all the splits
    would train until its slowest split stops, every split paying for it."""
    whole, rest = divmod(total, per)
    return [per] * whole + ([rest] if rest else [])


def final_chunks(config: Config) -> list[int]:
    return chunks(config.search.final_splits, config.evaluation.splits)


def confirm_chunks(config: Config) -> list[int]:
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


def candidates(trials: Sequence[TrialRecord], count: int) -> list[TrialRecord]:
    """The finalists: the first `count` of `finalist_order`."""
    return finalist_order(trials)[:count]


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
    std = float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0
    scored = (float(np.mean(losses)), std, tuple(losses), tuple(epochs), seconds)
    return FinalScore(tuple(seeds), splits, *scored, sizes=tuple(sizes))


def holds(score: FinalScore | None, seeds: Sequence[int], splits: int) -> bool:
    """True when `score` was made on these seeds and splits (a resumed search keeps it)."""
    return score is not None and (score.seeds, score.splits) == (tuple(seeds), splits)


def rescore_final(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: FinalObjective,
    reporter: Reporter,
    interrupted: Callable[[], bool] = lambda: False,
) -> None:
    """Re-score the finalists not yet re-scored on these seeds; then confirm a winner chosen
    among 2 or more on `search.confirm_splits` more splits, unless it holds that already."""
    trials = storage.trials(study)
    chosen = candidates(trials, config.search.final_candidates)
    sizes, seeds = final_chunks(config), final_seeds(config, trials)
    todo = [t for t in chosen if not holds(t.final, seeds, sum(sizes))]
    reporter.final_started(chosen, sum(sizes), len(todo))
    for trial in todo:
        final = score_final(objective, trial, seeds, sizes, interrupted)
        reporter.final_scored(storage.record_final(trial, final))
    trials = storage.trials(study)
    found = winner(trials)
    if config.search.confirm_splits <= 0 or found is None or found.final_candidates < 2:
        return
    sizes, seeds = confirm_chunks(config), confirm_seeds(config, trials)
    if holds(found.trial.confirm, seeds, sum(sizes)):
        return
    reporter.confirm_started(found.trial, sum(sizes))
    score = score_final(objective, found.trial, seeds, sizes, interrupted)
    reporter.confirm_scored(storage.record_final(found.trial, score, confirm=True))


def rescore(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: FinalObjective,
    reporter: Reporter,
    signals: Signals | None = None,
) -> None:
    """`rescore_final` with Ctrl-C and SIGTERM turned into SearchInterrupted."""
    signals = signals or Signals()
    try:
        with signals, signals.stopping():
            interrupted = lambda: signals.received is not None  # noqa: E731
            rescore_final(config, storage, study, objective, reporter, interrupted)
    except SearchInterrupted:
        raise
    except Exception as exc:
        if signals.received is not None:
            raise signals.stopped() from exc
        raise

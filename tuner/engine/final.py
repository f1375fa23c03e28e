"""The end of a search: the finalists re-scored on fresh splits (single networks, as trials
score them), then the winner confirmed on other fresh splits as what `tuner export` saves: an
ensemble of `evaluation.splits` networks (training/ensemble.py). The loss reported is that
confirmation's mean, on splits that did not choose the winner. A lone finalist is not re-scored
(`search.final_splits` 0, as budget.py plans it): a re-score of one chooses nothing, and its
calls go to the confirmation, the estimate of what is exported.

Chunk c of the re-score draws its seed from `SeedSequence([search.seed, FINAL_TAG, c, attempt])`
(CONFIRM_TAG for the confirmation); a seed `s` on `n` splits uses the seeds `s .. s+n-1` (a
confirmation chunk, one outer split of `evaluation.splits` networks, those of its networks), and
`fresh_seed` draws the next `attempt` until that range meets no seed the study used."""

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tuner.config.schema import Config
from tuner.engine.reporter import Reporter
from tuner.engine.signals import Signals
from tuner.errors import SearchInterrupted, TrialFailed, UsageError
from tuner.study.store import FinalScore, Storage, StudyRecord, TrialRecord
from tuner.study.winner import confirm_members, finalist_order, winner
from tuner.training.evaluate import Score
from tuner.training.metrics import mean_metrics

FINAL_TAG = 0x66696E61  # "fina"
CONFIRM_TAG = 0x636F6E66  # "conf"

# (params, seed, splits, **options): options `members=K` scores an ensemble of K networks
FinalObjective = Callable[..., Score]
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
    """One outer split a call: its `evaluation.splits` networks cost about one trial call."""
    return chunks(config.search.confirm_splits, 1)


def _chunk_seeds(
    entropy: Sequence[int], sizes: Sequence[int], used: list[SeedRange], least: int = 1
) -> list[int]:
    """Fresh seeds for chunks of `sizes` splits (of at least `least` seeds each); their ranges
    are added to `used`."""
    seeds: list[int] = []
    for c, size in enumerate(sizes):
        width = max(size, least)
        seeds.append(fresh_seed([*entropy, c], width, used))
        used.append((seeds[-1], seeds[-1] + width))
    return seeds


def final_seeds(config: Config, trials: Sequence[TrialRecord]) -> list[int]:
    """The seeds of the final re-score's chunks: apart from every seed the search used."""
    used = trial_ranges(trials, config.evaluation.splits)
    return _chunk_seeds([config.search.seed, FINAL_TAG], final_chunks(config), used)


def confirm_seeds(config: Config, trials: Sequence[TrialRecord]) -> list[int]:
    """The seeds of the confirmation's chunks: apart from the search's and the final ones."""
    used = trial_ranges(trials, config.evaluation.splits)
    _chunk_seeds([config.search.seed, FINAL_TAG], final_chunks(config), used)
    members = config.evaluation.splits
    return _chunk_seeds([config.search.seed, CONFIRM_TAG], confirm_chunks(config), used, members)


def candidates(trials: Sequence[TrialRecord], count: int) -> list[TrialRecord]:
    """The finalists: the first `count` of `finalist_order`."""
    return finalist_order(trials)[:count]


def score_final(
    objective: FinalObjective,
    trial: TrialRecord,
    seeds: Sequence[int],
    sizes: Sequence[int],
    interrupted: Callable[[], bool] = lambda: False,
    members: int | None = None,
) -> FinalScore:
    """Score a trial's point on fresh splits, chunk by chunk (with `members`, the ensemble of
    that many networks each split's training part alone trains); a failure is recorded."""
    splits, scores = sum(sizes), []
    options = {} if members is None else {"members": members}
    for seed, size in zip(seeds, sizes, strict=True):
        try:
            scores.append(objective(trial.params, seed, size, **options))
        except TrialFailed as exc:
            return FinalScore(tuple(seeds), splits, error_kind=exc.kind, error=exc.message)
        except UsageError:
            raise
        except Exception as exc:  # a bug in one re-score must not lose the search's result
            if interrupted():
                raise
            error = f"{type(exc).__name__}: {exc}"
            return FinalScore(tuple(seeds), splits, error_kind="crashed", error=error)
    losses = [loss for score in scores for loss in score.split_losses]
    epochs = [epoch for score in scores for epoch in score.epochs]
    std = float(np.std(losses, ddof=1)) if len(losses) > 1 else 0.0
    scored = (float(np.mean(losses)), std, tuple(losses), tuple(epochs))
    seconds = sum(score.seconds for score in scores)
    # Each chunk's metrics are means over its splits: weighted by them, over all the splits.
    found = mean_metrics([s.metrics for s in scores], [len(s.split_losses) for s in scores])
    return FinalScore(tuple(seeds), splits, *scored, seconds, sizes=tuple(sizes), metrics=found)


def holds(score: FinalScore | None, seeds: Sequence[int], splits: int) -> bool:
    """True when `score` was made on these seeds and splits (a resumed search keeps it)."""
    return score is not None and (score.seeds, score.splits) == (tuple(seeds), splits)


def alone(config: Config, confirm_splits: int | None = None) -> Config:
    """`config`'s end for a lone finalist: confirmed on `confirm_splits` (as configured unless
    given), not re-scored. By `model_copy`, which does not validate: final_splits 0 is the
    end's own, the schema's least (2) is for configs users write."""
    search = config.search
    calls = search.confirm_splits if confirm_splits is None else confirm_splits
    cut = {"final_candidates": 1, "final_splits": 0, "confirm_splits": calls}
    return config.model_copy(update={"search": search.model_copy(update=cut)})


def confirm_holds(config: Config, trials: Sequence[TrialRecord], trial: TrialRecord) -> bool:
    """True when `trial` holds this end's confirmation: its seeds, splits and members."""
    seeds = confirm_seeds(config, trials)
    held = holds(trial.confirm, seeds, config.search.confirm_splits)
    return held and confirm_members(trial) == config.evaluation.splits


def rescore_final(
    config: Config,
    storage: Storage,
    study: StudyRecord,
    objective: FinalObjective,
    reporter: Reporter,
    interrupted: Callable[[], bool] = lambda: False,
) -> None:
    """Re-score the finalists not yet re-scored on these seeds; then confirm the winner, as an
    ensemble of `evaluation.splits` networks, on `search.confirm_splits` more splits, unless it
    holds that already. With `search.final_splits` 0, confirm the first finalist alone."""
    trials = storage.trials(study)
    chosen = candidates(trials, config.search.final_candidates)
    if config.search.final_splits <= 0:
        if chosen:
            _confirm(config, storage, trials, chosen[0], objective, reporter, interrupted)
        return
    sizes, seeds = final_chunks(config), final_seeds(config, trials)
    todo = [t for t in chosen if not holds(t.final, seeds, sum(sizes))]
    reporter.final_started(chosen, sum(sizes), len(todo))
    for trial in todo:
        final = score_final(objective, trial, seeds, sizes, interrupted)
        reporter.final_scored(storage.record_final(trial, final))
    trials = storage.trials(study)
    found = winner(trials)
    if found is not None and found.rescored:
        _confirm(config, storage, trials, found.trial, objective, reporter, interrupted)


def _confirm(
    config: Config,
    storage: Storage,
    trials: Sequence[TrialRecord],
    trial: TrialRecord,
    objective: FinalObjective,
    reporter: Reporter,
    interrupted: Callable[[], bool],
) -> None:
    """Confirm `trial` as exported on `search.confirm_splits` fresh splits, unless it holds
    that confirmation already."""
    if config.search.confirm_splits <= 0 or confirm_holds(config, trials, trial):
        return
    sizes, seeds = confirm_chunks(config), confirm_seeds(config, trials)
    members = config.evaluation.splits
    reporter.confirm_started(trial, sum(sizes))
    score = score_final(objective, trial, seeds, sizes, interrupted, members)
    # The members beside the score, in one write: the winner says what its loss is of.
    stored: dict[str, Any] = {"confirm": {**score.to_dict(), "members": members}}
    if config.search.final_splits <= 0:
        # A re-score from an earlier end is not this end's: the winner would choose by it.
        stored["final"] = None
    reporter.confirm_scored(storage.set_attrs(trial, stored))


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

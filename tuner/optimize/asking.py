"""What a worker is given when it asks for work: a queued retry, a new point, or nothing."""

from collections.abc import Mapping, Sequence

import numpy as np

from tuner.config.schema import Config
from tuner.config.space import SearchSpace
from tuner.optimize.optimizer import Allowed, Proposer
from tuner.study.store import RERUN_KINDS, RETRY_LIMITED_KINDS, NewTrial, TrialRecord, TrialState


def trial_seed(search_seed: int, proposal: int) -> int:
    """The seed of the k-th proposal's splits and weights: fixed by the search seed."""
    return int(np.random.SeedSequence([search_seed, proposal]).generate_state(1)[0] >> 1)


def _retry_depth(trial: TrialRecord, by_number: Mapping[int, TrialRecord]) -> int:
    """How many times the point of `trial` went stale or killed its worker, along its retries."""
    depth = 0
    current: TrialRecord | None = trial
    while current is not None:
        depth += current.error_kind in RETRY_LIMITED_KINDS
        current = by_number.get(current.retry_of) if current.retry_of is not None else None
    return depth


def queued_retry(trials: Sequence[TrialRecord], max_retries: int) -> TrialRecord | None:
    """The first interrupted, stale or died trial to retry (the latter two max_retries times)."""
    by_number = {t.number: t for t in trials}
    retried = {t.retry_of for t in trials if t.retry_of is not None}
    for trial in trials:
        if trial.error_kind not in RERUN_KINDS or trial.number in retried:
            continue
        limited = trial.error_kind in RETRY_LIMITED_KINDS
        if limited and _retry_depth(trial, by_number) > max_retries:
            continue  # given up: a new point takes its place in the budget
        return trial
    return None


class Asker:
    """Chooses the next trial of a search from the study's trials."""

    def __init__(
        self, config: Config, prior: Sequence[TrialRecord] = (), allowed: Allowed | None = None
    ) -> None:
        """`prior`: warm-start trials; `allowed`: which points may be proposed (by size)."""
        self._config = config
        self._space = SearchSpace(config.space)
        self._proposer = Proposer(self._space, config.search, allowed)
        # Warm-start trials go first in the history, each in place of a random initial point.
        self._prior = tuple(prior)

    def choose(self, trials: Sequence[TrialRecord]) -> NewTrial | None:
        """A queued retry, else the next proposal; None once the budget is taken."""
        search = self._config.search
        taken = sum(1 for t in trials if t.counts or t.state == TrialState.RUNNING)
        if taken >= search.budget:  # those that count and those running
            return None
        old = queued_retry(trials, search.max_retries)
        if old is not None:
            return NewTrial(old.point, old.params, old.seed, retry_of=old.number)
        k = sum(1 for t in trials if t.retry_of is None)
        point = self._proposer.propose(k + len(self._prior), [*self._prior, *trials])
        return NewTrial(point, self._space.params(point), trial_seed(search.seed, k))

"""The serialised ask on both backends: exact budget, retries of stale trials, the liar."""

from __future__ import annotations

import time

from tuner.config.schema import validate_config
from tuner.optimize.asking import Asker, queued_retry
from tuner.study.store import Storage, TrialState

from .conftest import BOWL_SPACE, NO_DATA

RAW = {
    "data": NO_DATA,
    "space": BOWL_SPACE,
    "search": {"init_points": 2, "n_iter": 2, "seed": 5, "max_retries": 1},
}


def test_budget_is_exact_and_stale_points_are_retried_max_retries_times(storage_url):
    storage = Storage(storage_url)
    asker = Asker(validate_config(RAW))
    study = storage.create_study("s", RAW)
    try:
        started = [storage.ask(study, asker.choose, grace=60).trial for _ in range(4)]
        assert all(t is not None for t in started)
        assert storage.ask(study, asker.choose, grace=60).trial is None, "4 running = budget"
        for trial in started[1:]:
            storage.finish_trial(trial, state="complete", loss=0.5)
        time.sleep(1.2)
        retry = storage.ask(study, asker.choose, grace=1.0).trial  # trial 0 goes stale
        assert retry is not None and retry.retry_of == 0
        assert (retry.params, retry.seed) == (started[0].params, started[0].seed)
        time.sleep(1.2)
        fresh = storage.ask(study, asker.choose, grace=1.0).trial  # the retry goes stale too
        assert fresh is not None and fresh.retry_of is None, "max_retries 1: the point is dropped"
        assert fresh.point not in (t.point for t in started)
        trials = storage.trials(study)
        assert [t.error_kind for t in trials[:5]] == ["stale", None, None, None, "stale"]
        assert queued_retry(trials, max_retries=1) is None
        assert queued_retry(trials, max_retries=2).number == 4
        storage.finish_trial(fresh, state="complete", loss=0.4)
        assert storage.ask(study, asker.choose, grace=1.0).trial is None, "budget spent"
        done = storage.trials(study)
        assert sum(t.state == TrialState.COMPLETE for t in done) == 4
        assert not any(t.state == TrialState.RUNNING for t in done)
    finally:
        storage.close()

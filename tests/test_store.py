"""The study database: one suite, run on a SQLite file and on a PostgreSQL server."""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tuner.errors import StudyError, TrialRejected
from tuner.study.store import FinalScore, NewTrial, Storage, TrialState, sqlite_url
from tuner.training.difficulty import Difficulty


@pytest.fixture
def storage(storage_url: str):
    store = Storage(storage_url)
    yield store
    store.close()


def test_study_is_created_once_and_keeps_its_config(storage):
    study = storage.create_study("s", {"space": {"dropout": {"low": 0.0, "high": 0.5}}})
    assert storage.get_study("s") == study
    assert study.config["space"]["dropout"]["high"] == 0.5
    assert storage.get_study("other") is None
    with pytest.raises(StudyError, match=r"^--study: study 's' already exists in .*; add --resume"):
        storage.create_study("s", {})


def test_trials_are_written_running_then_finished(storage):
    study = storage.create_study("s", {})
    first = storage.start_trial(
        study, {"a": np.float64(0.25)}, {"dropout": np.float64(0.1)}, seed=7
    )
    assert (first.number, first.state, first.point, first.seed) == (
        0,
        TrialState.RUNNING,
        {"a": 0.25},
        7,
    )
    second = storage.start_trial(study, {"a": 0.5}, {"dropout": 0.2}, seed=8)
    assert second.number == 1
    done = storage.finish_trial(
        first,
        state=TrialState.COMPLETE,
        loss=0.5,
        loss_std=0.1,
        split_losses=[0.4, 0.6],
        epochs=[3, 4],
        seconds=1.5,
        baselines=[np.float64(0.45), 0.65],
    )
    assert (
        done.state == TrialState.COMPLETE
        and done.split_losses == (0.4, 0.6)
        and done.epochs == (3, 4)
        and done.baselines == (0.45, 0.65)
    )
    failed = storage.finish_trial(
        second, state=TrialState.FAILED, error_kind="diverged", error="loss became nan", seconds=0.2
    )
    assert failed.counts and failed.error_kind == "diverged"
    assert [t.state for t in storage.trials(study)] == [TrialState.COMPLETE, TrialState.FAILED]


def test_running_trials_of_a_dead_process_are_failed(storage):
    study = storage.create_study("s", {})
    other = storage.create_study("t", {})
    storage.start_trial(study, {}, {}, seed=1)
    storage.start_trial(other, {}, {}, seed=1)
    assert storage.fail_running(study, "interrupted", "the process stopped") == 1
    (trial,) = storage.trials(study)
    assert trial.state == TrialState.FAILED and trial.error_kind == "interrupted"
    assert not trial.counts, "an interrupted trial does not spend budget"
    assert storage.trials(other)[0].state == TrialState.RUNNING


def test_data_survives_reopening(tmp_path: Path):
    url = sqlite_url(tmp_path / "study.db")
    first = Storage(url)
    study = first.create_study("s", {"x": 1})
    storage_trial = first.start_trial(study, {"p": 0.1}, {"q": 1}, seed=3)
    first.finish_trial(storage_trial, state="complete", loss=0.3)
    first.close()
    again = Storage(url)
    (trial,) = again.trials(again.get_study("s"))
    assert trial.loss == 0.3 and trial.params == {"q": 1}
    again.close()
    with sqlite3.connect(tmp_path / "study.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_tables_another_process_created_first_are_taken_as_they_are(storage_url: str):
    """A search and a reader opening a new database at once: the other one creates the tables
    between this one's look for them and its CREATE (the race that stopped a search once)."""
    from sqlalchemy import create_engine, event

    from tuner.study.records import _Base

    studies, raced = _Base.metadata.tables["studies"], []

    def other_process_first(table, _connection, **_kw):
        if not raced:
            raced.append(table.name)
            other = create_engine(storage_url)
            _Base.metadata.create_all(other)
            other.dispose()

    event.listen(studies, "before_create", other_process_first)
    try:
        store = Storage(storage_url)
    finally:
        event.remove(studies, "before_create", other_process_first)
    assert raced == ["studies"], "the other process created the tables in the gap"
    study = store.create_study("s", {})
    assert store.get_study("s") == study
    store.close()


def test_bad_storage_url():
    with pytest.raises(StudyError, match=r"^--storage: cannot use 'nonsense://x'"):
        Storage("nonsense://x")


def test_exclusive_holds_a_sqlite_file_and_is_a_no_op_on_a_server(storage_url: str):
    first, second = Storage(storage_url), Storage(storage_url)
    try:
        if first.url.startswith("sqlite"):
            refused = pytest.raises(StudyError, match=r"is in use by another tuner search; wait")
            with first.exclusive(), refused, second.exclusive():
                pass
        else:
            # By design: workers on many boxes share a server study; the ask is serialised
            # by a row lock instead (see test_ask_*). The refusal above is skipped here.
            with first.exclusive(), second.exclusive():
                pass
        with second.exclusive():
            pass
    finally:
        first.close()
        second.close()


def _one_each(trials):
    """A chooser that starts a trial whose point records how many trials it saw."""
    time.sleep(0.02)  # widen the window in which an unserialised ask would interleave
    return NewTrial({"seen": len(trials)}, {}, seed=len(trials))


def test_ask_is_serialised_across_threads_and_connections(storage_url: str):
    stores = [Storage(storage_url) for _ in range(6)]
    study = stores[0].create_study("s", {})
    try:
        with ThreadPoolExecutor(6) as pool:
            asked = list(pool.map(lambda s: s.ask(study, _one_each, grace=60), stores * 3))
    finally:
        for store in stores:
            store.close()
    seen = sorted(a.trial.point["seen"] for a in asked)
    assert seen == list(range(18)), "each ask saw every trial started before it"
    assert sorted(a.trial.number for a in asked) == list(range(18))
    assert len({a.trial.owner for a in asked}) == 18


def test_ask_fails_stale_trials_and_rejects_their_late_result(storage):
    study = storage.create_study("s", {})
    alive = storage.start_trial(study, {"p": 1}, {}, seed=1)
    dead = storage.start_trial(study, {"p": 2}, {}, seed=2)
    time.sleep(1.5)
    assert storage.beat([alive]) == 1
    asked = storage.ask(study, lambda trials: None, grace=1.0)
    assert asked.trial is None
    states = {t.number: (t.state, t.error_kind) for t in asked.trials}
    assert states == {0: (TrialState.RUNNING, None), 1: (TrialState.FAILED, "stale")}
    assert not asked.trials[1].counts, "a stale trial does not spend budget"
    with pytest.raises(TrialRejected, match=r"^trial 1: result rejected, the trial is failed"):
        storage.finish_trial(dead, state="complete", loss=0.1)
    assert storage.beat([dead]) == 0
    assert storage.finish_trial(alive, state="complete", loss=0.2).loss == 0.2
    (_, stale) = storage.trials(study)
    assert stale.loss is None and stale.error_kind == "stale"


def test_a_result_from_another_owner_is_rejected(storage):
    study = storage.create_study("s", {})
    trial = storage.start_trial(study, {}, {}, seed=1)
    impostor = dataclasses.replace(trial, owner="0" * 32)
    with pytest.raises(TrialRejected):
        storage.finish_trial(impostor, state="complete", loss=0.1)
    assert storage.fail_trials([impostor], "interrupted", "x") == 0
    assert storage.fail_trials([trial], "interrupted", "stopped") == 1


def test_an_older_database_gets_the_new_columns(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE trials (id INTEGER PRIMARY KEY, study_id INTEGER, number INTEGER,"
            " state VARCHAR(16), point JSON, params JSON, seed INTEGER, retry_of INTEGER,"
            " loss FLOAT, loss_std FLOAT, split_losses JSON, epochs JSON, seconds FLOAT,"
            " error_kind VARCHAR(32), error TEXT, started_at DATETIME, finished_at DATETIME)"
        )
    store = Storage(sqlite_url(path))
    study = store.create_study("s", {})
    trial = store.start_trial(study, {}, {}, seed=1)
    done = store.finish_trial(trial, state="complete", loss=0.5, baselines=[0.6])
    assert done.owner == trial.owner and done.baselines == (0.6,)
    store.close()


def test_an_older_database_keeps_racing_rounds_and_final_rescores(tmp_path: Path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the schema before racing and re-scoring
        db.execute(
            "CREATE TABLE trials (id INTEGER PRIMARY KEY, study_id INTEGER, number INTEGER,"
            " state VARCHAR(16), point JSON, params JSON, seed INTEGER, retry_of INTEGER,"
            " loss FLOAT, loss_std FLOAT, split_losses JSON, epochs JSON, seconds FLOAT,"
            " error_kind VARCHAR(32), error TEXT, started_at DATETIME, finished_at DATETIME,"
            " owner VARCHAR(32), heartbeat_at DATETIME, worker VARCHAR(200))"
        )
    store = Storage(sqlite_url(path))
    study = store.create_study("s", {})
    trial = store.start_trial(study, {}, {}, seed=1)
    done = store.finish_trial(
        trial,
        state="complete",
        loss=0.5,
        split_losses=[0.4, 0.6, 0.5, 0.5],
        race={"seeds": [77], "seconds": 1.5},
    )
    assert done.race_seeds == (77,) and done.race_seconds == 1.5 and done.final is None
    final = FinalScore(
        seeds=(99,), splits=3, loss=0.55, loss_std=0.1, split_losses=(0.5, 0.6, 0.55)
    )
    store.record_final(done, final)
    failed = FinalScore(seeds=(99,), splits=3, error_kind="timed_out", error="ran longer")
    other = store.start_trial(study, {}, {}, seed=2)
    other = store.finish_trial(other, state="complete", loss=0.7)
    store.record_final(other, failed)
    store.close()
    again = Storage(sqlite_url(path))
    first, second = again.trials(again.get_study("s"))
    again.close()
    assert first.final == final and first.final.loss_se == pytest.approx(0.1 / 3**0.5)
    assert second.final == failed and not second.final.ok


def test_a_final_rescore_is_stored_on_a_completed_trial_only(storage):
    study = storage.create_study("s", {})
    running = storage.start_trial(study, {}, {}, seed=1)
    final = FinalScore(seeds=(5,), splits=2, loss=0.3, loss_std=0.0, split_losses=(0.3, 0.3))
    with pytest.raises(StudyError, match="not a completed trial"):
        storage.record_final(running, final)
    done = storage.finish_trial(running, state="complete", loss=0.2)
    assert storage.record_final(done, final).final == final
    assert storage.trials(study)[0].final == final
    # The split difficulty measured for the score reported: kept until a new score replaces it.
    measured = Difficulty((5,), 2, (0.31, 0.33), 8, 20, 0.3, 0.02, 1.1, 6, 0.2, (0,))
    assert storage.record_difficulty(done, measured).difficulty == measured
    assert storage.trials(study)[0].difficulty == measured, "stored as it was"
    assert storage.record_final(done, final, confirm=True).difficulty is None, "dropped"
    storage.record_difficulty(done, measured)
    assert storage.record_final(done, final).difficulty is None
    storage.record_difficulty(done, measured)
    assert storage.record_difficulty(done, None).difficulty is None

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
from tuner.study.records import LEGACY_COLUMNS
from tuner.study.store import FinalScore, NewTrial, Storage, TrialState, sqlite_url


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
        seconds=np.float64(1.5),
    )
    assert (
        done.state == TrialState.COMPLETE
        and done.split_losses == (0.4, 0.6)
        and done.epochs == (3, 4)
        and done.seconds == 1.5
        and done.attrs == {}
    )
    with pytest.raises(TypeError, match="no trial field baselines, race"):
        storage.finish_trial(second, state="complete", loss=0.1, race={}, baselines=[0.2])
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
    with sqlite3.connect(path) as db:  # the first release's trials table
        db.execute(
            "CREATE TABLE trials (id INTEGER PRIMARY KEY, study_id INTEGER, number INTEGER,"
            " state VARCHAR(16), point JSON, params JSON, seed INTEGER, retry_of INTEGER,"
            " loss FLOAT, loss_std FLOAT, split_losses JSON, epochs JSON, seconds FLOAT,"
            " error_kind VARCHAR(32), error TEXT, started_at DATETIME, finished_at DATETIME)"
        )
    store = Storage(sqlite_url(path))
    study = store.create_study("s", {})
    trial = store.start_trial(study, {}, {}, seed=1)
    done = store.finish_trial(trial, state="complete", loss=0.5)
    assert done.owner == trial.owner and done.attrs == {}
    final = FinalScore(seeds=(9,), splits=2, loss=0.4, loss_std=0.0, split_losses=(0.4, 0.4))
    assert store.record_final(done, final).final == final
    store.close()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(trials)")}
    assert {"owner", "heartbeat_at", "worker", "attrs"} <= columns
    assert not columns & set(LEGACY_COLUMNS), "legacy columns are not added to a database"


def test_a_new_database_has_no_research_columns(storage):
    from sqlalchemy import create_engine, inspect

    engine = create_engine(storage.url)
    columns = {c["name"] for c in inspect(engine).get_columns("trials")}
    engine.dispose()
    assert "attrs" in columns
    assert not columns & {"race", "final", "confirm", "difficulty", "baselines"}


def test_a_final_rescore_is_stored_on_a_completed_trial_only(storage):
    study = storage.create_study("s", {})
    running = storage.start_trial(study, {}, {}, seed=1)
    final = FinalScore(
        seeds=(5,), splits=2, loss=0.3, loss_std=0.1, split_losses=(0.2, 0.4), sizes=(2,)
    )
    with pytest.raises(StudyError, match="not a completed trial"):
        storage.record_final(running, final)
    done = storage.finish_trial(running, state="complete", loss=0.2)
    stored = storage.record_final(done, final)
    assert stored.final == final and stored.confirm is None
    assert stored.final.loss_se == pytest.approx(0.1 / 2**0.5)
    assert stored.attrs == {"final": final.to_dict()}
    assert storage.trials(study)[0].final == final
    failed = FinalScore(seeds=(6,), splits=2, error_kind="timed_out", error="ran longer")
    confirmed = storage.record_final(done, failed, confirm=True)
    assert (confirmed.final, confirmed.confirm) == (final, failed) and not failed.ok
    # A new re-score replaces the old one and drops the confirmation measured against it.
    again = FinalScore(seeds=(7,), splits=2, loss=0.25, loss_std=0.0, split_losses=(0.25,) * 2)
    replaced = storage.record_final(done, again)
    assert (replaced.final, replaced.confirm) == (again, None)
    assert storage.trials(study)[0] == replaced


def test_a_trials_metrics_are_kept_in_its_attrs(storage):
    study = storage.create_study("s", {})
    running = storage.start_trial(study, {}, {}, seed=1)
    assert running.metrics == {} and running.to_dict()["metrics"] == {}
    storage.set_attrs(running, {"queued": True})
    metrics = {"accuracy": np.float64(0.75), "roc_auc": float("nan")}
    done = storage.finish_trial(running, state="complete", loss=0.4, metrics=metrics)
    (stored,) = storage.trials(study)
    # NaN (an undefined metric) is stored as null, which PostgreSQL's JSON accepts
    assert stored.attrs == {"queued": True, "metrics": {"accuracy": 0.75, "roc_auc": None}}
    assert stored.metrics["accuracy"] == 0.75 and np.isnan(stored.metrics["roc_auc"])
    assert done.attrs == stored.attrs and stored.loss == 0.4
    assert stored.to_dict()["metrics"] == {"accuracy": 0.75, "roc_auc": None}


def test_a_final_scores_metrics_round_trip_and_older_ones_have_none(storage):
    final = FinalScore(seeds=(5,), splits=2, loss=0.3, metrics={"r2": 0.5, "rmse": float("nan")})
    assert final.to_dict()["metrics"] == {"r2": 0.5, "rmse": None}
    back = FinalScore.from_dict(final.to_dict())
    assert back.metrics["r2"] == 0.5 and np.isnan(back.metrics["rmse"])
    older = {k: v for k, v in final.to_dict().items() if k != "metrics"}
    assert FinalScore.from_dict(older).metrics == {}
    study = storage.create_study("s", {})
    done = storage.finish_trial(storage.start_trial(study, {}, {}, seed=1), state="complete")
    assert storage.record_final(done, final, confirm=True).confirm.metrics["r2"] == 0.5


def test_attrs_are_merged_and_other_keys_kept(storage):
    study = storage.create_study("s", {})
    trial = storage.finish_trial(
        storage.start_trial(study, {}, {}, seed=1), state="complete", loss=0.2
    )
    final = FinalScore(seeds=(5,), splits=2, loss=0.3, loss_std=0.0, split_losses=(0.3, 0.3))
    storage.set_attrs(trial, {"note": "kept", "count": np.int64(2)})
    stored = storage.record_final(trial, final)
    assert stored.attrs == {"note": "kept", "count": 2, "final": final.to_dict()}
    stored = storage.set_attrs(trial, {"note": None, "later": {"x": [1, 2]}})
    assert stored.attrs == {"count": 2, "final": final.to_dict(), "later": {"x": [1, 2]}}
    assert stored.final == final, "keys this version reads stay typed"
    running = storage.start_trial(study, {}, {}, seed=2)
    assert storage.set_attrs(running, {"queued": True}).attrs == {"queued": True}
    gone = dataclasses.replace(trial, id=10_000, number=99)
    with pytest.raises(StudyError, match="trial 99 is not a trial of the study"):
        storage.set_attrs(gone, {"x": 1})


def test_concurrent_writers_of_different_keys_keep_both(storage_url: str):
    stores = [Storage(storage_url) for _ in range(4)]
    study = stores[0].create_study("s", {})
    trial = stores[0].start_trial(study, {}, {}, seed=1)
    jobs = [(store, f"k{i}_{j}") for i, store in enumerate(stores) for j in range(5)]
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda job: job[0].set_attrs(trial, {job[1]: 1}), jobs))
        (stored,) = stores[0].trials(study)
    finally:
        for store in stores:
            store.close()
    assert stored.attrs == {key: 1 for _, key in jobs}


def test_a_final_score_from_a_later_version_still_reads():
    data = {**FinalScore(seeds=(1,), splits=2, loss=0.5).to_dict(), "later_key": [1]}
    assert FinalScore.from_dict(data) == FinalScore(seeds=(1,), splits=2, loss=0.5)


def _as_legacy(url: str) -> None:
    """Give a database the trials table of earlier versions: their score columns, no attrs."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE trials DROP COLUMN attrs"))
        for name in LEGACY_COLUMNS:
            connection.execute(text(f"ALTER TABLE trials ADD COLUMN {name} JSON"))
    engine.dispose()


def _legacy_write(url: str, number: int, **values: object) -> None:
    """Write legacy columns of one trial as earlier versions did (JSON null for JSON.NULL)."""
    from sqlalchemy import JSON, Integer, column, create_engine, table

    trials = table("trials", column("number", Integer), *(column(n, JSON) for n in values))
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(trials.update().where(trials.c.number == number).values(**values))
    engine.dispose()


def _legacy_read(url: str) -> dict[int, tuple]:
    from sqlalchemy import JSON, Integer, column, create_engine, select, table

    trials = table("trials", column("number", Integer), *(column(n, JSON) for n in LEGACY_COLUMNS))
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(select(trials).order_by(trials.c.number)).all()
    engine.dispose()
    return {row[0]: tuple(row[1:]) for row in rows}


def _legacy_study(storage_url: str, final: FinalScore, confirm: FinalScore):
    """Study `s` of five completed trials, then its table made legacy and scores written into
    the legacy columns as earlier versions wrote them."""
    from sqlalchemy import JSON

    store = Storage(storage_url)
    study = store.create_study("s", {})
    for seed in range(5):
        trial = store.start_trial(study, {}, {}, seed=seed)
        store.finish_trial(trial, state="complete", loss=0.1 * seed)
    store.close()
    _as_legacy(storage_url)
    _legacy_write(
        storage_url,
        0,
        final=final.to_dict(),
        confirm=confirm.to_dict(),
        race={"seeds": [77], "seconds": 1.5},
        difficulty={"slope": 0.4},
        baselines=[0.5, 0.6],
    )
    _legacy_write(storage_url, 1, final=final.to_dict(), confirm=JSON.NULL)
    _legacy_write(storage_url, 2, final=JSON.NULL, confirm=JSON.NULL)
    _legacy_write(storage_url, 3, baselines=[0.1])
    return study


def test_legacy_scores_are_copied_into_attrs_once_and_kept(storage_url: str):
    final = FinalScore(seeds=(5,), splits=2, loss=0.3, loss_std=0.1, split_losses=(0.2, 0.4))
    confirm = FinalScore(seeds=(6,), splits=2, loss=0.35, loss_std=0.0, split_losses=(0.35,) * 2)
    study = _legacy_study(storage_url, final, confirm)
    before = _legacy_read(storage_url)
    store = Storage(storage_url)
    trials = store.trials(study)
    assert [(t.final, t.confirm) for t in trials] == [
        (final, confirm),
        (final, None),
        (None, None),
        (None, None),
        (None, None),
    ]
    assert trials[0].attrs == {"final": final.to_dict(), "confirm": confirm.to_dict()}
    assert trials[2].attrs == {} and trials[3].attrs == {}
    # Written now, then the legacy column changed behind its back: attrs is not copied again.
    store.record_final(trials[1], confirm, confirm=True)
    store.close()
    _legacy_write(storage_url, 1, final=confirm.to_dict())
    again = Storage(storage_url)
    (_, second, *_) = again.trials(study)
    again.close()
    assert (second.final, second.confirm) == (final, confirm)
    after = _legacy_read(storage_url)
    assert after == {**before, 1: (None, confirm.to_dict(), None, None, None)}, "legacy kept"

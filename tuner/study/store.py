"""Studies and their trials through SQLAlchemy, each write one transaction."""

import json
import os
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tuner.errors import StudyError, TrialRejected
from tuner.study.database import file_lock, open_engine, process_lock
from tuner.study.database import require_database as require_database
from tuner.study.database import sqlite_url as sqlite_url
from tuner.study.records import RERUN_KINDS as RERUN_KINDS
from tuner.study.records import RETRY_LIMITED_KINDS as RETRY_LIMITED_KINDS
from tuner.study.records import (
    Asked,
    Chooser,
    FinalScore,
    NewTrial,
    StudyRecord,
    TrialRecord,
    TrialState,
    _record,
    _StudyRow,
    _TrialRow,
    stored_metrics,
)

_NO_SYNC = {"synchronize_session": False}
# What finish_trial may write: a trial's state and its result or error.
RESULT_FIELDS = frozenset(
    {"state", "loss", "loss_std", "split_losses", "epochs", "seconds", "error_kind", "error"}
)
# What finish_trial keeps in the trial's `attrs` rather than a column of its own.
RESULT_ATTRS = frozenset({"metrics"})


def _now() -> datetime:
    return datetime.now(UTC)


class Storage:
    """Studies and trials in one database named by a SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine) as session, session.begin():
            yield session

    def close(self) -> None:
        self._engine.dispose()

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold a SQLite study database for one search (`database.file_lock`)."""
        return file_lock(self._engine)

    def get_study(self, name: str) -> StudyRecord | None:
        with self._session() as session:
            row = session.scalars(select(_StudyRow).where(_StudyRow.name == name)).first()
            return StudyRecord(row.id, row.name, dict(row.config)) if row else None

    def create_study(self, name: str, config: dict[str, Any]) -> StudyRecord:
        """A new study; refuses a name that exists."""
        if self.get_study(name) is not None:
            raise StudyError(
                f"--study: study '{name}' already exists in {self.url}; "
                "add --resume to continue it, or choose another --study"
            )
        with self._session() as session:
            row = _StudyRow(name=name, config=_jsonable(config), created_at=_now())
            session.add(row)
            session.flush()
            return StudyRecord(row.id, row.name, dict(row.config))

    def trials(self, study: StudyRecord) -> list[TrialRecord]:
        with self._session() as session:
            return [_record(row) for row in _trial_rows(session, study)]

    def start_trial(
        self,
        study: StudyRecord,
        point: dict[str, Any],
        params: dict[str, Any],
        seed: int,
        retry_of: int | None = None,
    ) -> TrialRecord:
        """Write a new trial as running, numbered after the last one, with a fresh owner."""
        with self._session() as session:
            new = NewTrial(point, params, seed, retry_of)
            return _insert(session, study, new, _db_now(session))

    def ask(self, study: StudyRecord, choose: Chooser, grace: float) -> Asked:
        """Fail stale trials, `choose` from all, start the choice: one locked transaction."""
        with process_lock(self.url), self._session() as session:
            self._lock(session, study)
            now = _db_now(session)
            beat = func.coalesce(_TrialRow.heartbeat_at, _TrialRow.started_at)
            lost = "no heartbeat for search.grace seconds (its worker stopped or lost the database)"
            stale = update(_TrialRow).where(*_running(study), beat < now - timedelta(seconds=grace))
            session.execute(stale.values(**_failed("stale", lost)), execution_options=_NO_SYNC)
            trials = tuple(_record(row) for row in _trial_rows(session, study))
            chosen = choose(trials)
            started = _insert(session, study, chosen, now) if chosen is not None else None
            return Asked(started, trials)

    def _lock(self, session: Session, study: StudyRecord) -> None:
        if self._engine.dialect.name == "sqlite":
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        else:
            session.execute(select(_StudyRow.id).where(_StudyRow.id == study.id).with_for_update())

    def beat(self, trials: Sequence[TrialRecord]) -> int:
        """Refresh the heartbeat of trials this worker still owns; returns how many."""
        if not trials:
            return 0
        with self._session() as session:
            return _update_owned(session, trials, heartbeat_at=_db_now(session))

    @property
    def shared(self) -> bool:
        """True for a server database, which workers on many boxes share."""
        return self._engine.dialect.name != "sqlite"

    def finish_trial(self, trial: TrialRecord, **values: Any) -> TrialRecord:
        """Record how a trial ended; TrialRejected when this owner no longer runs it."""
        unknown = sorted(set(values) - RESULT_FIELDS - RESULT_ATTRS)
        if unknown:
            raise TypeError(f"finish_trial: no trial field {', '.join(unknown)}")
        extras = {k: values.pop(k) for k in RESULT_ATTRS & set(values)}
        values = {k: _jsonable(v) for k, v in values.items()}
        values["state"] = TrialState(values["state"]).value
        with self._session() as session:
            if extras:
                values["attrs"] = _with_result_attrs(session, trial, extras)
            updated = _update_owned(session, [trial], **values, finished_at=_now())
            row = session.get(_TrialRow, trial.id)
            if row is None:
                raise StudyError(f"trial {trial.number} is not in the study any more")
            if not updated:
                raise TrialRejected(
                    f"trial {trial.number}: result rejected, the trial is {row.state} "
                    f"({row.error_kind or 'no error'}) and no longer owned by this worker"
                )
            return _record(row)

    def record_final(
        self, trial: TrialRecord, final: FinalScore, *, confirm: bool = False
    ) -> TrialRecord:
        """Store a trial's re-score (dropping its confirmation), or with `confirm` that."""
        score = final.to_dict()
        values = {"confirm": score} if confirm else {"final": score, "confirm": None}
        return self._merge(trial, values, completed=True)

    def set_attrs(self, trial: TrialRecord, values: Mapping[str, Any]) -> TrialRecord:
        """Merge `values` into a trial's `attrs`; a None value removes its key."""
        return self._merge(trial, values, completed=False)

    def _merge(
        self, trial: TrialRecord, values: Mapping[str, Any], *, completed: bool
    ) -> TrialRecord:
        """Merge into `attrs` holding the row, so that two writers of different keys keep both."""
        with self._session() as session:
            if self._engine.dialect.name == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            row = session.get(_TrialRow, trial.id, with_for_update=True)
            if row is None or (completed and row.state != TrialState.COMPLETE.value):
                state = "completed trial" if completed else "trial"
                raise StudyError(f"trial {trial.number} is not a {state} of the study")
            attrs = {**(row.attrs or {}), **_jsonable(dict(values))}
            # {} rather than NULL: NULL would be copied from legacy again
            row.attrs = {k: v for k, v in attrs.items() if v is not None or k not in values}
            session.flush()
            return _record(row)

    def fail_trials(self, trials: Sequence[TrialRecord], kind: str, message: str) -> int:
        """Mark the given trials failed if they still run under their owner; returns how many."""
        with self._session() as session:
            return _update_owned(session, trials, **_failed(kind, message))

    def fail_running(self, study: StudyRecord, kind: str, message: str) -> int:
        """Mark every trial left running as failed; returns how many."""
        with self._session() as session:
            query = update(_TrialRow).where(*_running(study)).values(**_failed(kind, message))
            return int(session.execute(query).rowcount or 0)


def _running(study: StudyRecord) -> tuple[Any, ...]:
    return (_TrialRow.study_id == study.id, _TrialRow.state == TrialState.RUNNING.value)


def _update_owned(session: Session, trials: Sequence[TrialRecord], **values: Any) -> int:
    """Update the trials still running under the owner that started them; returns how many."""
    count = 0
    for trial in trials:
        owner = _TrialRow.owner.is_(None) if trial.owner is None else _TrialRow.owner == trial.owner
        owned = (_TrialRow.id == trial.id, _TrialRow.state == TrialState.RUNNING.value, owner)
        query = update(_TrialRow).where(*owned).values(**values)
        count += int(session.execute(query, execution_options=_NO_SYNC).rowcount or 0)
    return count


def _with_result_attrs(
    session: Session, trial: TrialRecord, extras: Mapping[str, Any]
) -> dict[str, Any]:
    """The trial's `attrs` with a result's extras merged in (read without loading the row, so
    that the row finish_trial returns is read after its update)."""
    current = session.scalar(select(_TrialRow.attrs).where(_TrialRow.id == trial.id)) or {}
    merged = {**current, **extras}
    if "metrics" in extras:
        merged["metrics"] = stored_metrics(extras["metrics"])
    return _jsonable(merged)


def _failed(kind: str, message: str) -> dict[str, Any]:
    state = TrialState.FAILED.value
    return {"state": state, "error_kind": kind, "error": message, "finished_at": _now()}


def _trial_rows(session: Session, study: StudyRecord) -> Sequence[_TrialRow]:
    query = select(_TrialRow).where(_TrialRow.study_id == study.id).order_by(_TrialRow.number)
    return session.scalars(query).all()


def _insert(session: Session, study: StudyRecord, new: NewTrial, now: datetime) -> TrialRecord:
    last = session.scalar(select(func.max(_TrialRow.number)).where(_TrialRow.study_id == study.id))
    row = _TrialRow(
        study_id=study.id,
        number=0 if last is None else last + 1,
        state=TrialState.RUNNING.value,
        point=_jsonable(new.point),
        params=_jsonable(new.params),
        seed=new.seed,
        retry_of=new.retry_of,
        started_at=_now(),
        owner=uuid.uuid4().hex,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        heartbeat_at=now,
    )
    session.add(row)
    session.flush()
    return _record(row)


def _db_now(session: Session) -> datetime:
    """The clock every box of a study agrees on: a server's, or (SQLite) this box's."""
    if session.bind is None or session.bind.dialect.name == "sqlite":
        return _now()
    return session.scalar(select(func.clock_timestamp()))  # type: ignore[return-value]


def _jsonable(value: Any) -> Any:
    """Plain Python types only (numpy floats and the like become float/int/str)."""
    return json.loads(json.dumps(value, default=_coerce))


def _coerce(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__}")

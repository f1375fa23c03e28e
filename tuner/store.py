"""The study database: studies and their trials, through SQLAlchemy (SQLite or PostgreSQL).

Rows go out as frozen records; a trial is written as running before it trains and updated once
when it ends, each write in its own transaction.
"""

from __future__ import annotations

import enum
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tuner.errors import StudyError


class TrialState(enum.StrEnum):
    """Where a trial is in its life."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


# Failure kinds that say nothing about the point: its trial is run again and is not budget.
RERUN_KINDS = frozenset({"interrupted"})


class _Base(DeclarativeBase):
    pass


class _StudyRow(_Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class _TrialRow(_Base):
    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("study_id", "number"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    point: Mapped[dict[str, Any]] = mapped_column(JSON)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    retry_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    loss_std: Mapped[float | None] = mapped_column(Float, nullable=True)
    split_losses: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    epochs: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    error_kind: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: its name and the config it was started with."""

    id: int
    name: str
    config: dict[str, Any]


@dataclass(frozen=True)
class TrialRecord:
    """One trial as stored."""

    number: int
    state: TrialState
    point: dict[str, Any]
    params: dict[str, Any]
    seed: int
    retry_of: int | None = None
    loss: float | None = None
    loss_std: float | None = None
    split_losses: tuple[float, ...] = ()
    epochs: tuple[int, ...] = ()
    seconds: float | None = None
    error_kind: str | None = None
    error: str | None = None
    id: int = 0

    @property
    def counts(self) -> bool:
        """True when the trial ended in a way that spends budget (not interrupted or running)."""
        if self.state == TrialState.COMPLETE:
            return True
        return self.state == TrialState.FAILED and self.error_kind not in RERUN_KINDS

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "trial": self.number,
            "state": self.state.value,
            "loss": self.loss,
            "loss_std": self.loss_std,
            "split_losses": list(self.split_losses),
            "epochs": list(self.epochs),
            "seconds": self.seconds,
            "params": self.params,
            "error_kind": self.error_kind,
            "error": self.error,
        }


def _record(row: _TrialRow) -> TrialRecord:
    return TrialRecord(
        id=row.id,
        number=row.number,
        state=TrialState(row.state),
        point=dict(row.point),
        params=dict(row.params),
        seed=row.seed,
        retry_of=row.retry_of,
        loss=row.loss,
        loss_std=row.loss_std,
        split_losses=tuple(row.split_losses or ()),
        epochs=tuple(row.epochs or ()),
        seconds=row.seconds,
        error_kind=row.error_kind,
        error=row.error,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of a SQLite file."""
    return f"sqlite:///{path.resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Storage:
    """Studies and trials in one database named by a SQLAlchemy URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = _make_engine(url)
        database = self._engine.url.database
        if self._engine.dialect.name == "sqlite" and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        try:
            _Base.metadata.create_all(self._engine)
        except OperationalError as exc:
            raise StudyError(f"--storage: cannot open {url} ({exc.orig}); check the URL") from exc

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with Session(self._engine) as session, session.begin():
            yield session

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold a SQLite study database for one search; another search on it is refused.

        The lock is an flock on `<database>.lock`, so the system frees it when the holder
        dies, even by kill -9. Server databases are shared on purpose and take no lock here.
        """
        database = self._engine.url.database
        if self._engine.dialect.name != "sqlite" or not database or database == ":memory:":
            yield
            return
        with Path(f"{database}.lock").open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise StudyError(
                    f"--storage: {database} is in use by another tuner search; wait for it to "
                    "end, or use another --out or --storage"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def get_study(self, name: str) -> StudyRecord | None:
        """The study of that name, or None."""
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
        """Every trial of a study, by number."""
        with self._session() as session:
            rows = session.scalars(
                select(_TrialRow).where(_TrialRow.study_id == study.id).order_by(_TrialRow.number)
            )
            return [_record(row) for row in rows]

    def start_trial(
        self,
        study: StudyRecord,
        point: dict[str, Any],
        params: dict[str, Any],
        seed: int,
        retry_of: int | None = None,
    ) -> TrialRecord:
        """Write a new trial as running, numbered after the last one."""
        with self._session() as session:
            last = session.scalar(
                select(func.max(_TrialRow.number)).where(_TrialRow.study_id == study.id)
            )
            row = _TrialRow(
                study_id=study.id,
                number=0 if last is None else last + 1,
                state=TrialState.RUNNING.value,
                point=_jsonable(point),
                params=_jsonable(params),
                seed=seed,
                retry_of=retry_of,
                started_at=_now(),
            )
            session.add(row)
            session.flush()
            return _record(row)

    def finish_trial(self, trial: TrialRecord, **values: Any) -> TrialRecord:
        """Record how a running trial ended (state plus result or error fields)."""
        values = {k: _jsonable(v) for k, v in values.items()}
        values["state"] = TrialState(values["state"]).value
        with self._session() as session:
            row = session.get(_TrialRow, trial.id)
            if row is None:
                raise StudyError(f"trial {trial.number} is not in the study any more")
            for key, value in values.items():
                setattr(row, key, value)
            row.finished_at = _now()
            session.flush()
            return _record(row)

    def fail_running(self, study: StudyRecord, kind: str, message: str) -> int:
        """Mark every trial left running as failed; returns how many."""
        with self._session() as session:
            result = session.execute(
                update(_TrialRow)
                .where(_TrialRow.study_id == study.id, _TrialRow.state == TrialState.RUNNING.value)
                .values(
                    state=TrialState.FAILED.value,
                    error_kind=kind,
                    error=message,
                    finished_at=_now(),
                )
            )
            return int(result.rowcount or 0)


def _make_engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise StudyError(f"--storage: cannot use {url!r} ({exc}); give a SQLAlchemy URL") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _jsonable(value: Any) -> Any:
    """Plain Python types only (numpy floats and the like become float/int/str)."""
    return json.loads(json.dumps(value, default=_coerce))


def _coerce(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot store {type(value).__name__}")

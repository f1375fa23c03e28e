"""The study database's schema: its tables, and the frozen records that rows go out as."""

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Self

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class TrialState(enum.StrEnum):
    """Where a trial is in its life."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


# Failure kinds that say nothing sure about the point: its trial runs again and is not budget.
# "stale" (no heartbeats: a dead box) and "died" (its process died) are retried at most
# search.max_retries times: a point that kills every process it runs in must not run for ever.
RERUN_KINDS = frozenset({"interrupted", "stale", "died"})
RETRY_LIMITED_KINDS = frozenset({"stale", "died"})


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
    owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Per-trial extras by name (like Optuna's trial system attributes): "final" and "confirm"
    # hold FinalScore dicts. New extras go here rather than into a column of their own.
    attrs: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)


# Columns added after the first release: ALTER TABLE adds them to an older database.
_LATER_COLUMNS = {
    "owner": "VARCHAR(32)",
    "heartbeat_at": "TIMESTAMP WITH TIME ZONE",
    "worker": "VARCHAR(200)",
    "attrs": "JSON",
}

# Columns that earlier versions wrote and this one neither declares nor writes. A database
# that has them keeps them (no data is dropped); `final` and `confirm` are copied into
# `attrs` once when it is opened (database.py).
LEGACY_COLUMNS = ("race", "final", "confirm", "difficulty", "baselines")
LEGACY_ATTRS = ("final", "confirm")


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: its name and the config it was started with."""

    id: int
    name: str
    config: dict[str, Any]


_SEQUENCES = ("seeds", "split_losses", "epochs", "sizes")  # FinalScore's tuples, lists in JSON


def stored_metrics(values: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Metrics as stored: an undefined one (NaN) as null, which PostgreSQL's JSON accepts."""
    floats = {name: float(value) for name, value in (values or {}).items() if value is not None}
    return {name: value if math.isfinite(value) else None for name, value in floats.items()}


def read_metrics(values: Any) -> dict[str, float]:
    """Metrics read back: null as NaN; `{}` when absent (a study stored before metrics)."""
    if not isinstance(values, Mapping):
        return {}
    return {name: math.nan if value is None else float(value) for name, value in values.items()}


@dataclass(frozen=True)
class FinalScore:
    """A completed trial re-scored on `splits` fresh splits, drawn in chunks from `seeds`."""

    seeds: tuple[int, ...]
    splits: int
    loss: float | None = None
    loss_std: float | None = None
    split_losses: tuple[float, ...] = ()
    epochs: tuple[int, ...] = ()
    seconds: float | None = None
    error_kind: str | None = None
    error: str | None = None
    sizes: tuple[int, ...] = ()  # splits of each chunk (empty when stored before they were)
    metrics: dict[str, float] = field(default_factory=dict)  # over all its splits' predictions

    @property
    def ok(self) -> bool:
        """True when the re-score completed with a loss."""
        return self.error_kind is None and self.loss is not None

    @property
    def loss_se(self) -> float:
        return (self.loss_std or 0.0) / math.sqrt(max(1, len(self.split_losses)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also how it is stored)."""
        lists = {key: list(getattr(self, key)) for key in _SEQUENCES}
        return {**asdict(self), **lists, "metrics": stored_metrics(self.metrics)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Back from the stored JSON; a later version's keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values |= {key: tuple(data.get(key) or ()) for key in _SEQUENCES}
        return cls(**values | {"metrics": read_metrics(data.get("metrics"))})


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
    owner: str | None = None
    worker: str | None = None
    final: FinalScore | None = None  # the re-score on fresh splits, for finalists
    confirm: FinalScore | None = None  # the winner's score on confirmation splits
    # Every stored extra by name, `final` and `confirm` as their dicts; a later version's
    # extras pass through here unread.
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        """Its search-time metrics (`training.metrics`); `{}` when stored before there were."""
        return read_metrics(self.attrs.get("metrics"))

    @property
    def counts(self) -> bool:
        """True when the trial ended in a way that spends budget (not interrupted or running)."""
        if self.state == TrialState.COMPLETE:
            return True
        return self.state == TrialState.FAILED and self.error_kind not in RERUN_KINDS

    def to_dict(self) -> dict[str, Any]:
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
            "seed": self.seed,
            "metrics": stored_metrics(self.metrics),
            "final": self.final.to_dict() if self.final is not None else None,
            "confirm": self.confirm.to_dict() if self.confirm is not None else None,
        }


def _score(attrs: Mapping[str, Any], key: str) -> FinalScore | None:
    data = attrs.get(key)
    return FinalScore.from_dict(data) if isinstance(data, Mapping) and data else None


def _record(row: _TrialRow) -> TrialRecord:
    attrs = dict(row.attrs or {})
    converted = {
        "state": TrialState(row.state),
        "point": dict(row.point),
        "params": dict(row.params),
        "split_losses": tuple(row.split_losses or ()),
        "epochs": tuple(row.epochs or ()),
        "final": _score(attrs, "final"),
        "confirm": _score(attrs, "confirm"),
        "attrs": attrs,
    }
    plain = {f.name: getattr(row, f.name) for f in fields(TrialRecord) if f.name not in converted}
    return TrialRecord(**plain, **converted)


@dataclass(frozen=True)
class NewTrial:
    """What to start: a point, its parameters and seed, and the trial it retries if any."""

    point: dict[str, Any]
    params: dict[str, Any]
    seed: int
    retry_of: int | None = None


@dataclass(frozen=True)
class Asked:
    """The trial an ask started (None: nothing to start now) and the trials it saw before."""

    trial: TrialRecord | None
    trials: tuple[TrialRecord, ...]


Chooser = Callable[[Sequence[TrialRecord]], NewTrial | None]

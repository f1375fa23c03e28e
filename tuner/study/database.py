"""Opening a study database: URLs, engines, the SQLite settings and the locks around it."""

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Integer, column, create_engine, event, inspect, or_, table, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from tuner.errors import StudyError
from tuner.study.records import _LATER_COLUMNS, LEGACY_ATTRS, _Base

# Looks again after another process created a table first, at most this many times.
RACE_RETRIES = 2
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def require_database(
    url: str,
    key: str = "--storage",
    fix: str = "run `tuner search` first, or give --storage URL and --study NAME",
) -> None:
    """Refuse a SQLite file that does not exist rather than create an empty database."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StudyError(
            f"{key}: cannot use {url!r} as a storage URL; give a SQLAlchemy URL, "
            "e.g. sqlite:////path/to/study.db"
        ) from exc
    database = parsed.database
    local = parsed.get_backend_name() == "sqlite" and database and database != ":memory:"
    if local and not Path(database).is_file():
        prefix = "" if key == "--storage" else f"{key}: "
        raise StudyError(f"{prefix}no study database at {database}; {fix}")


def open_engine(url: str) -> Engine:
    """An engine on the database at `url`, its tables created or brought up to date."""
    try:
        engine = create_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise StudyError(f"--storage: cannot use {url!r} ({exc}); give a SQLAlchemy URL") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if _local_file(engine):
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    try:
        _create_tables(engine)
    except OperationalError as exc:
        raise StudyError(f"--storage: cannot open {url} ({exc.orig}); check the URL") from exc
    return engine


def _create_tables(engine: Engine) -> None:
    """Create the missing tables and columns; again when another process made one meanwhile."""
    for attempt in range(RACE_RETRIES + 1):
        try:
            _Base.metadata.create_all(engine)
            _add_later_columns(engine)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as exc:
            meanwhile = ("already exists", "duplicate column", "duplicate key value")
            if attempt == RACE_RETRIES or not any(w in str(exc.orig) for w in meanwhile):
                raise


@contextmanager
def file_lock(engine: Engine) -> Iterator[None]:
    """Hold a SQLite database for one search: an flock, freed when the holder dies."""
    if not _local_file(engine):
        yield
        return
    database = engine.url.database
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


def process_lock(url: str) -> threading.Lock:
    """One ask at a time per database here, in order (SQLite's busy handler is not fair)."""
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(url, threading.Lock())


def _local_file(engine: Engine) -> bool:
    database = engine.url.database
    return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    for name in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {name}")
    cursor.close()


def _add_later_columns(engine: Engine) -> None:
    """Add the columns an older database lacks, then copy its legacy score columns (kept for
    older versions) into `attrs` of the rows without, each row once, a JSON null as absent."""
    present = {found["name"] for found in inspect(engine).get_columns("trials")}
    with engine.begin() as connection:
        for name, kind in _LATER_COLUMNS.items():
            if name not in present:
                connection.execute(text(f"ALTER TABLE trials ADD COLUMN {name} {kind}"))
    names = [name for name in LEGACY_ATTRS if name in present]
    if not names:
        return
    legacy = (column(name, JSON) for name in names)
    trials = table("trials", column("id", Integer), column("attrs", JSON), *legacy)
    held, unset = or_(*(trials.c[name].is_not(None) for name in names)), trials.c.attrs.is_(None)
    with engine.begin() as connection:
        for row in connection.execute(trials.select().where(unset, held)).mappings().all():
            attrs = {name: row[name] for name in names if row[name] is not None}
            connection.execute(
                trials.update().where(trials.c.id == row["id"], unset).values(attrs=attrs)
            )

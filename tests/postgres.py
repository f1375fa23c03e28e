"""A throwaway PostgreSQL server for the tests, or the one TUNER_TEST_POSTGRES_URL names.

The server is initdb'd into a temporary folder, listens on 127.0.0.1 and a free port, trusts
local connections and is stopped at the end of the session. As root it runs as the
unprivileged `postgres` user (PostgreSQL refuses to run as root). Each test gets a database
of its own on it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

# Debian installs each major version in its own folder; the newest first.
_DEBIAN = sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
BIN_DIRS = (*_DEBIAN, "/usr/local/bin")
_counter = itertools.count()


class PostgresUnavailable(RuntimeError):
    """No server could be reached or started; the message says why."""


def _binary(name: str) -> str:
    for folder in BIN_DIRS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise PostgresUnavailable(f"no {name} binary (install Debian's postgresql package)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user(command: list[str]) -> list[str]:
    if os.getuid() != 0:
        return command
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable("running as root and there is no 'postgres' user") from exc
    return ["runuser", "-u", "postgres", "--", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_user(command), capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PostgresUnavailable(f"{Path(command[0]).name} failed: {done.stderr.strip()[-400:]}")


@contextlib.contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server, yield its admin URL (database `postgres`), stop and delete it."""
    folder = Path(tempfile.mkdtemp(prefix="tuner-pg-"))
    data = folder / "data"
    if os.getuid() == 0:
        shutil.chown(folder, "postgres")
    port = _free_port()
    _run([_binary("initdb"), "-D", str(data), "-U", "tuner", "-A", "trust", "-E", "UTF8"])
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c max_connections=200 -c fsync=off"
    log = folder / "server.log"
    _run([_binary("pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start"])
    try:
        yield f"postgresql+psycopg://tuner@127.0.0.1:{port}/postgres"
    finally:
        with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
            _run([_binary("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


def fresh_database(admin_url: str) -> str:
    """Create an empty database on the server; returns its SQLAlchemy URL."""
    import psycopg

    name = f"tuner_test_{os.getpid()}_{next(_counter)}"
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def check_server(admin_url: str) -> None:
    """Raise PostgresUnavailable unless the server answers."""
    try:
        import psycopg
    except ImportError as exc:
        raise PostgresUnavailable("psycopg is not installed (the postgresql extra)") from exc
    plain = admin_url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        with psycopg.connect(plain, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise PostgresUnavailable(f"cannot connect to {admin_url}: {exc}") from exc


def skip_reason(error: Exception) -> str:
    """The loud message of a skipped PostgreSQL test; also warned once."""
    message = (
        f"POSTGRESQL TESTS SKIPPED: {error}. Set TUNER_TEST_POSTGRES_URL to a server's admin URL "
        "(postgresql+psycopg://user@host:port/postgres) or install PostgreSQL's binaries."
    )
    warnings.warn(message, stacklevel=2)
    return message

"""Creating a SQLAlchemy engine for a headrace database URL, with each dialect's settings."""

from __future__ import annotations

import math
import weakref
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from headrace.exceptions import ConfigurationError
from headrace.jsonvalues import storable_dumps

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_WAL_SIZE_LIMIT = 64 * 1024 * 1024
"""Bytes of write-ahead log kept on disk once it starts over: a burst leaves no huge file."""
WRITE_OPTION = "headrace_write"
KEEPALIVE_PROBES = 3
MIN_CONNECT_TIMEOUT_SECONDS = 2
"""libpq's own floor: a shorter connect timeout is taken as 2 s."""


def normalise_url(url: str) -> sa.URL:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for them."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"HEADRACE_DATABASE_URL is not a database URL: {url!r}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"HEADRACE_DATABASE_URL must be sqlite:/// or postgresql://, not {parsed.drivername}"
        )
    return parsed


_own_backends: weakref.WeakKeyDictionary[sa.Engine, set[int]] = weakref.WeakKeyDictionary()


def create_engine(url: str, timeout_seconds: float | None = None) -> sa.Engine:
    """An engine for ``url``; on PostgreSQL, with ``timeout_seconds`` its connections error
    within about that long when the server or the network goes silent, instead of waiting."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    connect_args = postgres_timeouts(timeout_seconds)
    for name in parsed.query:  # what the URL sets itself wins
        if name == "options":
            connect_args["options"] = f"{parsed.query[name]} {connect_args.get('options', '')}"
        else:
            connect_args.pop(name, None)
    return _postgres_engine(parsed, connect_args)


def postgres_timeouts(timeout_seconds: float | None) -> dict[str, Any]:
    """libpq connection options bounding every wait by about ``timeout_seconds``: connecting;
    data the server never acknowledges (``tcp_user_timeout``); an answer that never comes
    over a network gone silent (keepalives: idle, then probes, together the timeout); and a
    statement the server itself takes too long over (``statement_timeout``)."""
    if timeout_seconds is None:
        return {}
    millis = max(1, math.ceil(timeout_seconds * 1000))
    idle = max(1, math.floor(timeout_seconds / 2))
    interval = max(1, math.floor((timeout_seconds - idle) / KEEPALIVE_PROBES))
    return {
        "connect_timeout": max(MIN_CONNECT_TIMEOUT_SECONDS, math.ceil(timeout_seconds)),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": millis,
        "options": f"-c statement_timeout={millis}",
    }


def detached_connection(engine: sa.Engine) -> Any:
    """A driver connection of its own, out of the pool: it never serves the store's work."""
    connection = engine.raw_connection()
    connection.detach()
    return connection


def own_backend_pids(engine: sa.Engine) -> frozenset[int]:
    """PostgreSQL server processes of this engine's connections: what this process itself did."""
    return frozenset(_own_backends.get(engine, ()))


def _postgres_engine(url: sa.URL, connect_args: dict[str, Any]) -> sa.Engine:
    engine = sa.create_engine(
        url,
        connect_args=connect_args,
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=True,
        json_serializer=storable_dumps,
    )
    backends = _own_backends[engine] = set()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        record.info["backend_pid"] = dbapi_connection.info.backend_pid
        backends.add(record.info["backend_pid"])

    @event.listens_for(engine, "close")
    def _on_close(_dbapi_connection: Any, record: Any) -> None:
        backends.discard(record.info.get("backend_pid", -1))

    return engine


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"Cannot use {str(folder)!r} for the SQLite database ({exc.strerror or exc}): "
                "check HEADRACE_HOME, or set HEADRACE_DATABASE_URL"
            ) from None
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False},
        pool_size=8,
        max_overflow=8,
        json_serializer=storable_dumps,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event (below) emit BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Before anything is written: a new database can give back the space of deleted
        # runs (retention); an existing one keeps its mode, and reuses that space instead.
        cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_SIZE_LIMIT}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # Writers take the lock up front, so a read-then-write never deadlocks on upgrade.
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine

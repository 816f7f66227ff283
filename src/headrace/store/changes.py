"""News from other processes: a run was queued, or a cancellation requested, elsewhere.

Runs created in the runner's own process wake it directly; runs queued by the
CLI, another client or another runner would otherwise wait for the next
dispatch poll. PostgreSQL says so: the schema's triggers notify
``headrace_runs`` (migration 0002) and runners LISTEN. SQLite cannot notify,
but ``PRAGMA data_version`` changes whenever another connection commits, and
reading it costs microseconds, so runners read it every
``SQLITE_WATCH_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa

from headrace.store.dialects import detached_connection, own_backend_pids

logger = logging.getLogger(__name__)

Wake = Literal["created", "cancelled"]
"""Why a runner is woken: a run to claim, or a cancellation to carry out."""

CHANNEL = "headrace_runs"
SQLITE_WATCH_SECONDS = 0.05
MAX_RECONNECT_SECONDS = 30.0


async def watch_changes(engine: sa.Engine, on_change: Callable[[Wake], None]) -> None:
    """Call ``on_change`` whenever another process may have queued or cancelled a run.

    Runs until cancelled. Spurious calls are harmless: the callee re-reads the store.
    """
    if engine.dialect.name == "sqlite":
        await _watch_data_version(engine, on_change)
    else:
        await _listen(engine, on_change)


async def _watch_data_version(engine: sa.Engine, on_change: Callable[[Wake], None]) -> None:
    # A connection of its own, out of the pool: the version moves with the commits of
    # every other connection, and this one never waits for a lock (it runs on the loop).
    connection = detached_connection(engine)
    try:
        cursor = connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")
        last = _data_version(cursor)
        while True:
            await asyncio.sleep(SQLITE_WATCH_SECONDS)
            current = _data_version(cursor)
            if current != last:
                last = current
                on_change("created")
                on_change("cancelled")
    finally:
        connection.close()


def _data_version(cursor: Any) -> int | None:
    """The database's data version; None (which counts as a change) while it is locked."""
    try:
        cursor.execute("PRAGMA data_version")
    except sqlite3.OperationalError:
        return None
    return int(cursor.fetchone()[0])


async def _listen(engine: sa.Engine, on_change: Callable[[Wake], None]) -> None:
    import psycopg

    url = engine.url.set(drivername="postgresql")
    conninfo = url.render_as_string(hide_password=False)
    failures = 0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                failures = 0
                on_change("created")  # whatever was queued while we were not listening
                async for notify in conn.notifies():
                    if notify.pid in own_backend_pids(engine):
                        continue  # this process's own write: it has woken itself already
                    on_change("cancelled" if notify.payload == "CANCELLING" else "created")
        except psycopg.OperationalError as exc:
            failures += 1
            delay = min(MAX_RECONNECT_SECONDS, 2.0 ** (failures - 1))
            logger.warning("Lost the database's notifications (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)

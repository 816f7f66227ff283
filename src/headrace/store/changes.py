"""A store's change feed: news that a run was queued, or a cancellation requested.

Runners subscribe to the feed of the store they serve, so they start a run the
moment it is queued instead of at their next poll. Writes of this process are
published by the store itself as they are made (``publish``). Writes of other
processes (the CLI, another client, another runner) are published by
``watch``: PostgreSQL says so, since the schema's triggers notify
``headrace_runs`` (migration 0002) and the feed LISTENs. SQLite cannot notify,
but ``PRAGMA data_version`` changes whenever another connection commits, and
reading it costs microseconds, so the feed reads it every
``SQLITE_WATCH_SECONDS``.

A runner is woken only by writes to its own database.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa

from headrace.store.dialects import detached_connection, own_backend_pids

logger = logging.getLogger(__name__)

Wake = Literal["created", "cancelled"]
"""Why a runner is woken: a run to claim, or a cancellation to carry out."""

Subscriber = Callable[[Wake], None]

CHANNEL = "headrace_runs"
SQLITE_WATCH_SECONDS = 0.05
MAX_RECONNECT_SECONDS = 30.0


class ChangeFeed:
    """Calls its subscribers whenever a run of its database may have been queued or cancelled.

    Spurious calls are harmless: a subscriber re-reads the store.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._subscribers: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` (from any thread: it must be thread-safe and cheap) on news.

        Returns the function that ends the subscription.
        """
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                remaining = list(self._subscribers)
                if callback in remaining:
                    remaining.remove(callback)
                self._subscribers = tuple(remaining)

        return unsubscribe

    def publish(self, why: Wake) -> None:
        """Tell every subscriber; thread-safe, and on a trigger's path, so it takes no lock."""
        for callback in self._subscribers:
            try:
                callback(why)
            except Exception:
                logger.exception("A subscriber to the store's changes failed")

    async def watch(self) -> None:
        """Publish what other processes write, until cancelled."""
        if self._engine.dialect.name == "sqlite":
            await _watch_data_version(self._engine, self.publish)
        else:
            await _listen(self._engine, self.publish)


async def _watch_data_version(engine: sa.Engine, on_change: Subscriber) -> None:
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


async def _listen(engine: sa.Engine, on_change: Subscriber) -> None:
    import psycopg  # here: a SQLite-only process never loads the PostgreSQL driver

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
                        continue  # this process's own write: the store published it already
                    on_change("cancelled" if notify.payload == "CANCELLING" else "created")
        except psycopg.OperationalError as exc:
            failures += 1
            delay = min(MAX_RECONNECT_SECONDS, 2.0 ** (failures - 1))
            logger.warning("Lost the database's notifications (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)

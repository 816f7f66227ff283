"""SQLite's WAL checkpoints, on a thread of their own instead of inside a commit.

A checkpoint copies the write-ahead log into the database file and syncs both
files: 3-10 ms of fsync on this kind of disk. Left to itself, SQLite runs one
inside whichever commit takes the log past 1,000 pages, so under load every few
hundred triggers one waited for it (most of M1's p99). A passive checkpoint on
another connection blocks no reader and no writer, so a long-lived store turns
the automatic ones off on its own connections and runs them here instead.
Durability is unchanged: commits are still in the log, and the log is synced
before it is copied.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from headrace.store.dialects import detached_connection

logger = logging.getLogger(__name__)

CHECKPOINT_SECONDS = 0.25
"""How often the log is copied into the database; a pass with nothing new costs microseconds."""


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval`` seconds until closed."""

    def __init__(self, engine: sa.Engine, interval: float = CHECKPOINT_SECONDS) -> None:
        self._engine = engine
        self._interval = interval
        self._stopped = threading.Event()
        self.passes = 0
        """Checkpoints run so far (those with nothing to copy too)."""
        event.listen(engine, "connect", _no_automatic_checkpoints)
        engine.dispose()  # pooled connections were opened with automatic checkpoints
        self._thread = threading.Thread(target=self._run, name="headrace-checkpoint", daemon=True)
        self._thread.start()

    @staticmethod
    def wanted(engine: sa.Engine) -> bool:
        """A SQLite database in a file (an in-memory one has no log)."""
        database = engine.url.database
        return engine.dialect.name == "sqlite" and bool(database) and database != ":memory:"

    def _run(self) -> None:
        connection: Any = None
        try:
            while not self._stopped.wait(self._interval):
                connection = connection or self._connect()
                if connection is not None and not self._checkpoint(connection):
                    connection.close()
                    connection = None  # opened afresh on the next pass
                self.passes += 1
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> Any:
        try:
            return detached_connection(self._engine)
        except Exception as exc:  # the next pass tries again; the log keeps every commit
            logger.warning("Cannot open the database to checkpoint it: %s", exc)
            return None

    @staticmethod
    def _checkpoint(connection: Any) -> bool:
        """One passive checkpoint; False if the connection failed."""
        try:
            cursor = connection.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            cursor.fetchall()
            cursor.close()
        except sqlite3.OperationalError as exc:  # busy or locked: the next pass catches up
            logger.debug("WAL checkpoint skipped: %s", exc)
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoint failed: %s", exc)
            return False
        return True

    def close(self) -> None:
        """Stop; the last connection to close checkpoints what is left."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        event.remove(self._engine, "connect", _no_automatic_checkpoints)


def _no_automatic_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()

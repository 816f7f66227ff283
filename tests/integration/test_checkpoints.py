"""SQLite's log is copied into the database file by a thread of its own, never by a commit."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

import headrace.store.dialects as store_engine
from headrace.store import SQLStore
from headrace.store.async_store import AsyncStore
from tests.helpers import eventually
from tests.integration.test_store import queue_runs, spec

pytestmark = pytest.mark.timeout(60)


def runs_in_the_database_file_alone(database: Path, copy: Path) -> int:
    """How many runs the database file holds without its write-ahead log."""
    shutil.copyfile(database, copy)  # the copy has no -wal beside it
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM flow_runs").fetchone()[0])
    except sqlite3.DatabaseError:  # copied halfway through a checkpoint: look again
        return -1
    finally:
        conn.close()


async def runs_copied(database: Path, expected: int) -> None:
    async def counted() -> int:
        return runs_in_the_database_file_alone(database, database.with_name("copy.db"))

    await eventually(counted, lambda n: n == expected, what=f"{expected} runs in the file")


async def test_commits_reach_the_database_file_without_running_a_checkpoint(
    tmp_path: Path,
) -> None:
    database = tmp_path / "headrace.db"
    store = AsyncStore(SQLStore(f"sqlite:///{database}"))
    try:
        with store.sync.engine.connect() as conn:
            # A commit that crossed the automatic threshold would sync both files itself.
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
        deployment = store.sync.upsert_deployment(spec())
        queue_runs(store.sync, deployment.id, 40)
        await runs_copied(database, 40)  # while the store is open: the background thread did it
    finally:
        store.close()


async def test_the_log_is_reused_once_copied(tmp_path: Path) -> None:
    database = tmp_path / "headrace.db"
    wal = Path(f"{database}-wal")
    store = AsyncStore(SQLStore(f"sqlite:///{database}"))
    try:
        deployment = store.sync.upsert_deployment(spec())
        checkpoints = store._checkpoints
        assert checkpoints is not None

        async def passes() -> int:
            return checkpoints.passes

        sizes = []
        for batch in range(1, 9):
            queue_runs(store.sync, deployment.id, 300)
            await runs_copied(database, 300 * batch)
            # The pass that copied them has finished once a later one has run.
            later = checkpoints.passes + 2
            await eventually(passes, lambda n, later=later: n >= later, what="a later pass")
            sizes.append(wal.stat().st_size)
        # Without checkpoints the log would grow by a batch each time (8x).
        assert sizes[-1] <= 3 * sizes[0], sizes
    finally:
        store.close()


async def test_a_burst_leaves_no_large_log_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 128 * 1024
    monkeypatch.setattr(store_engine, "SQLITE_WAL_SIZE_LIMIT", limit)
    database = tmp_path / "headrace.db"
    wal = Path(f"{database}-wal")
    store = AsyncStore(SQLStore(f"sqlite:///{database}"))
    try:
        deployment = store.sync.upsert_deployment(spec())
        queue_runs(store.sync, deployment.id, 2000)  # one large transaction
        assert wal.stat().st_size > 4 * limit
        await runs_copied(database, 2000)
        checkpoints = store._checkpoints
        assert checkpoints is not None
        later = checkpoints.passes + 2

        async def passes() -> int:
            return checkpoints.passes

        await eventually(passes, lambda n: n >= later, what="a later pass")

        async def log_after_a_write() -> int:
            queue_runs(store.sync, deployment.id, 1)  # the log starts over, cut to the limit
            return wal.stat().st_size

        # The write that finds the log wholly copied starts it over; a pass may still be
        # copying the last frames when the first write comes.
        await eventually(log_after_a_write, lambda size: size <= limit, what="the log cut")
    finally:
        store.close()

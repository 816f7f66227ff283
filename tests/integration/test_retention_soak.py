"""A simulated year of runs on SQLite with a 30-day retention: the database file stops
growing once a month of runs is stored, and gives space back after a large prune."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from headrace.states import utcnow
from headrace.store import Pruned, SQLStore
from headrace.store.admin import PRUNE_BATCH_RUNS
from tests.integration.test_retention import count_runs, seed_ended_runs

pytestmark = pytest.mark.timeout(120)

DAYS = 365
KEEP = timedelta(days=30)
RUNS_PER_DAY = 48
LOGS_PER_RUN = 3
STEADY_AFTER_DAYS = 45
"""A month of runs is stored, and has been pruned a fortnight: the file's size is set."""
GROWTH_ALLOWED = 1.1
"""Without retention the file grows tenfold over the year (1.6 MB after 30 days, 18 MB)."""
WEEK = 7


def prune(store: SQLStore, cutoff: object) -> Pruned:
    total = batch = store.prune_flow_runs(cutoff)  # type: ignore[arg-type]
    while batch.runs >= PRUNE_BATCH_RUNS:
        batch = store.prune_flow_runs(cutoff)  # type: ignore[arg-type]
        total += batch
    return total


def file_bytes(store: SQLStore, path: Path) -> int:
    """The database file's size with everything written into it (the log emptied)."""
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def test_a_year_of_runs_keeps_the_database_file_within_a_months_size(tmp_path: Path) -> None:
    path = tmp_path / "headrace.db"
    store = SQLStore(f"sqlite:///{path}")
    start = utcnow() - timedelta(days=DAYS)
    sizes = []
    pruned = Pruned()
    try:
        for day in range(DAYS):
            today = start + timedelta(days=day)
            ends = [today + timedelta(minutes=30 * n) for n in range(RUNS_PER_DAY)]
            seed_ended_runs(store, ends, logs_per_run=LOGS_PER_RUN)
            pruned += prune(store, today + timedelta(days=1) - KEEP)  # the cutoff moves a day
            if day % WEEK == WEEK - 1:
                sizes.append(file_bytes(store, path))
        kept = count_runs(store)
        assert kept == RUNS_PER_DAY * KEEP.days
        assert pruned.runs == RUNS_PER_DAY * (DAYS - KEEP.days)
        assert pruned.dependents["logs"] == pruned.runs * LOGS_PER_RUN
        steady = sizes[STEADY_AFTER_DAYS // WEEK]
        assert max(sizes) <= steady * GROWTH_ALLOWED, (steady, sizes)
    finally:
        store.close()


def test_a_large_prune_gives_the_space_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("headrace.store.admin.KEEP_FREE_PAGES", 64)
    path = tmp_path / "headrace.db"
    store = SQLStore(f"sqlite:///{path}")
    try:
        old = utcnow() - timedelta(days=90)
        seed_ended_runs(store, [old] * 6000, logs_per_run=LOGS_PER_RUN)
        full = file_bytes(store, path)
        assert prune(store, utcnow() - KEEP).runs == 6000
        after = file_bytes(store, path)
        with store.engine.connect() as conn:
            free = conn.exec_driver_sql("PRAGMA freelist_count").scalar_one()
        assert free <= 64
        assert after < full / 3, (full, after)
    finally:
        store.close()

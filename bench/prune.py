"""M1 (trigger latency) while a runner prunes 1,000,000 old runs in the background.

    python bench/prune.py [--database-url URL] [--runs N] [--logs-per-run N] [--quick]

A fresh database is seeded in bulk with finished runs that ended 60-90 days ago
(each with its state, from the database's trigger, and its log lines). Then
`headrace serve` measures M1 rounds with retention off (the same store, nothing
deleted), and a second server with HEADRACE_RETENTION_DAYS=30 measures M1 rounds
while it deletes them all, until none is left; one more round after that.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from headrace.store import SQLStore
from headrace.store.tables import flow_runs
from results import Results
from run import QUICK, Bench, Sizes
from scale import fresh_database
from server import Server

CHUNK = 20_000
PRUNE_TIMEOUT_SECONDS = 3600
RUN_COLUMNS = (
    "id, name, flow_name, parameters, idempotency_scope, state_type, state_name, "
    "state_timestamp, expected_start_time, start_time, end_time, run_count, max_retries, "
    "retry_delay_seconds, result_truncated, created, updated"
)


def _rows(start: int, stop: int, now: datetime, sqlite: bool) -> tuple[list[tuple], list]:
    runs, ids = [], []
    span = 30 * 86400 / max(stop, 1)
    for i in range(start, stop):
        run_id = uuid.uuid4()
        end = now - timedelta(days=60, seconds=i * span)
        when: object = end.replace(tzinfo=None).isoformat(" ") if sqlite else end
        key = run_id.hex if sqlite else run_id
        runs.append((key, f"old-{i}", "bench", "{}", "flow:bench", "COMPLETED", "Completed",
                     when, when, when, when, 1, 0, 0.0, False, when, when))  # fmt: skip
        ids.append((key, when))
    return runs, ids


def seed(url: str, runs: int, logs_per_run: int) -> float:
    """Insert ``runs`` finished runs with their log lines straight through the driver."""
    store = SQLStore(url)  # migrated
    started = time.perf_counter()
    now = datetime.now(UTC)
    raw = store.engine.raw_connection()
    try:
        for start in range(0, runs, CHUNK):
            rows, ids = _rows(start, min(runs, start + CHUNK), now, store.is_sqlite)
            lines = [(key, 20, f"line {n} of a run long gone", when) for key, when in ids
                     for n in range(logs_per_run)]  # fmt: skip
            cursor = raw.cursor()
            if store.is_sqlite:
                cursor.execute("BEGIN")  # the store's connections are in autocommit mode
                marks = ", ".join("?" * len(rows[0]))
                cursor.executemany(f"INSERT INTO flow_runs ({RUN_COLUMNS}) VALUES ({marks})", rows)
                cursor.executemany(
                    "INSERT INTO logs (flow_run_id, level, message, timestamp) VALUES (?, ?, ?, ?)",
                    lines,
                )
            else:
                _copy(cursor, f"flow_runs ({RUN_COLUMNS})", rows)
                _copy(cursor, 'logs (flow_run_id, level, message, "timestamp")', lines)
            raw.commit()
    finally:
        raw.close()
        store.close()
    return time.perf_counter() - started


def _copy(cursor: object, target: str, rows: list[tuple]) -> None:
    with cursor.copy(f"COPY {target} FROM STDIN") as copy:  # type: ignore[attr-defined]
        for row in rows:
            copy.write_row(row)


def old_runs(url: str) -> int:
    """Runs that ended more than 30 days ago (counted on the index retention uses)."""
    store = SQLStore(url)
    cutoff = datetime.now(UTC) - timedelta(days=30)
    query = sa.select(sa.func.count()).where(flow_runs.c.end_time < cutoff)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        store.close()


def file_mb(url: str) -> dict[str, float]:
    """The SQLite file's size, and its write-ahead log's."""
    database = sa.make_url(url).database
    if not url.startswith("sqlite") or not database:
        return {}
    path, wal = Path(database), Path(f"{database}-wal")
    return {
        "file_mb": path.stat().st_size / 1e6,
        "wal_mb": wal.stat().st_size / 1e6 if wal.exists() else 0.0,
    }


async def rounds(url: str, home: Path, sizes: Sizes, results: Results, *, retention: str,
                 label: str, count: int | None) -> None:  # fmt: skip
    """M1 rounds on a server with HEADRACE_RETENTION_DAYS=retention: ``count`` of them, or
    (None) until no old run is left, then one more."""
    os.environ["HEADRACE_RETENTION_DAYS"] = retention
    server = Server(home, url, 8)
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await server.wait_ready(client)
            bench = Bench(server, client, sizes, home)
            await bench.find_deployment()
            n, left = 0, -1
            while (count is None and left != 0) or (count is not None and n < count):
                if time.perf_counter() - started > PRUNE_TIMEOUT_SECONDS:
                    raise RuntimeError("pruning did not end in time")
                await bench.m1_trigger_latency(results, key=f"{label} M1 round {n + 1}")
                left = await asyncio.to_thread(old_runs, url)
                elapsed = time.perf_counter() - started
                results.add(f"{label} after round {n + 1}", old_runs_left=left, seconds=elapsed,
                            **file_mb(url))  # fmt: skip
                n += 1
            if count is None:
                results.add(f"{label} pruned all", seconds=time.perf_counter() - started)
                await bench.m1_trigger_latency(results, key=f"{label} M1 after pruning")
    finally:
        server.stop()


async def measure(args: argparse.Namespace, sizes: Sizes, work: Path, results: Results) -> None:
    with fresh_database(args.database_url, work, "prune") as url:
        seconds = await asyncio.to_thread(seed, url, args.runs, args.logs_per_run)
        results.add("seed", runs=args.runs, logs_per_run=args.logs_per_run, seconds=seconds,
                    **file_mb(url))  # fmt: skip
        home = work / "home"
        await rounds(url, home, sizes, results, retention="0", label="no retention",
                     count=args.rounds)  # fmt: skip
        await rounds(url, home, sizes, results, retention="30", label="pruning", count=None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary home")
    parser.add_argument("--runs", type=int, default=1_000_000, help="old runs seeded")
    parser.add_argument("--logs-per-run", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="M1 rounds without retention")
    parser.add_argument("--quick", action="store_true", help="20,000 runs, small rounds")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    if args.quick:
        args.runs, args.rounds = min(args.runs, 20_000), 1
    results = Results(database="postgresql" if args.database_url else "sqlite")
    work = Path(tempfile.mkdtemp(prefix="headrace-bench-prune-"))
    print(f"headrace prune benchmark on {results.database}: {args.runs:,} old runs")
    try:
        asyncio.run(measure(args, sizes, work, results))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

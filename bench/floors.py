"""Floors: what this host does with nothing of headrace in the way, measured in the same run.

A metric read as a multiple of its floor compares across hosts; its milliseconds alone
do not.

- fork: a warm interpreter forks, the child exits at once, the parent reaps it
  (the least a run's process can cost; M3 pays it and much more).
- route: one FastAPI route answering a constant, on uvicorn with the runner's loop and
  HTTP settings, on the runner's CPUs, asked by the same client as often as M6.
- commit: a one-row insert and its commit in a scratch table of the same database,
  over headrace's own engine (same driver, same SQLite pragmas), below SQLAlchemy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from rawhttp import Connection
from results import Results, percentiles
from server import free_port

FLOOR_APP = Path(__file__).resolve().parent / "floor_app.py"
START_TIMEOUT_SECONDS = 60
SCRATCH_TABLE = "headrace_bench_commit_floor"

FORK = "floor fork"
ROUTE = "floor route"
COMMIT = "floor commit"

RATIOS = [  # metric, the floors its p50 is compared with
    ("M1 trigger latency", (ROUTE, COMMIT)),
    ("M8 M1 with many runs", (ROUTE, COMMIT)),
    ("M7 POST /flow/run", (ROUTE, COMMIT)),
    ("M3 trigger->body start", (FORK,)),
    ("M6 GET /health", (ROUTE,)),
    ("M6 GET /run_count", (ROUTE,)),
]


def fork_floor(count: int) -> dict[str, float]:
    """Call with no other thread running: forking a threaded process is not the floor."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples.append((time.perf_counter() - start) * 1000)
    return {"n": count, **percentiles(samples)}


async def route_floor(count: int, cpus: set[int]) -> dict[str, float]:
    """The trivial route's latency, served from ``cpus`` (the runner's)."""
    with floor_server(cpus) as port:
        connection = Connection("127.0.0.1", port)
        try:
            await _wait_ready(connection)
            samples = []
            for _ in range(count):
                start = time.perf_counter()
                response = await connection.request("GET", "/")
                samples.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.text
        finally:
            await connection.close()
    return {"n": count, **percentiles(samples)}


@contextlib.contextmanager
def floor_server(cpus: set[int]) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, str(FLOOR_APP), str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.sched_setaffinity(process.pid, cpus)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_ready(connection: Connection) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if (await connection.request("GET", "/")).status_code == 200:
                return
        except (OSError, asyncio.IncompleteReadError):
            await connection.close()
        await asyncio.sleep(0.05)
    raise RuntimeError("the route floor's server did not answer in time")


def commit_floor(database_url: str, count: int) -> dict[str, float]:
    from headrace.store.dialects import create_engine

    engine = create_engine(database_url)
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(f"CREATE TABLE {SCRATCH_TABLE} (id INTEGER PRIMARY KEY, at FLOAT)")
        connection.commit()
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        insert = f"INSERT INTO {SCRATCH_TABLE} (id, at) VALUES ({mark}, {mark})"
        samples = []
        for i in range(count):
            start = time.perf_counter()
            cursor.execute(insert, (i, time.time()))
            connection.commit()  # SQLite: the connection autocommits each statement
            samples.append((time.perf_counter() - start) * 1000)
        cursor.execute(f"DROP TABLE {SCRATCH_TABLE}")
        connection.commit()
    finally:
        connection.close()
        engine.dispose()
    return {"n": count, **percentiles(samples)}


def add_ratios(results: Results) -> None:
    """Each metric's median as a multiple of the sum of its floors' medians."""
    for key, floors in RATIOS:
        if key not in results.metrics or not all(f in results.metrics for f in floors):
            continue
        floor_ms = sum(results.metrics[f]["p50_ms"] for f in floors)
        metric = results.metrics[key]
        results.add(
            f"{key} / floor",
            floor="+".join(f.removeprefix("floor ") for f in floors),
            floor_ms=floor_ms,
            p50_x=metric["p50_ms"] / floor_ms,
            p99_x=metric["p99_ms"] / floor_ms,
        )

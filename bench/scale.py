"""M8: the same trigger latency with 100,000 runs and 500 deployments in the store,
the poll (claim) query's time and plan, and build_server's time with 500 deployments."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from headrace.states import StateType, utcnow
from headrace.store import RunnerRecord, SQLStore
from headrace.store.tables import deployments, flow_runs

if TYPE_CHECKING:
    from results import Results
    from run import Bench, Sizes

CHUNK = 5000


@contextlib.contextmanager
def fresh_database(database_url: str | None, work: Path, name: str) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if not database_url:
        yield f"sqlite:///{work / f'{name}.db'}"
        return
    url = sa.make_url(database_url).set(drivername="postgresql+psycopg")
    database = f"headrace_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    try:
        yield url.set(database=database).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def populate(store: SQLStore, runs: int, deployment_count: int) -> list[uuid.UUID]:
    """Many deployments and many finished runs, inserted in bulk."""
    now = utcnow()
    ids = [uuid.uuid4() for _ in range(deployment_count)]
    with store.engine.begin() as conn:
        conn.execute(
            deployments.insert(),
            [
                {
                    "id": d, "name": f"d{i}", "flow_name": "scale", "entrypoint": "x.py:f",
                    "parameter_schema": {}, "parameters": {}, "enforce_parameter_schema": False,
                    "schedules": [], "tags": [], "paused": False, "catchup": False,
                    "on_shutdown": "finish", "retries": 0, "retry_delay_seconds": 0,
                    "created": now, "updated": now,
                }
                for i, d in enumerate(ids)
            ],
        )  # fmt: skip
        for start in range(0, runs, CHUNK):
            rows = []
            for i in range(start, min(runs, start + CHUNK)):
                when = now - timedelta(seconds=runs - i)
                done = i % 50 != 0  # every 50th run waits in the future
                rows.append(
                    {
                        "id": uuid.uuid4(), "name": f"run-{i}", "flow_name": "scale",
                        "deployment_id": ids[i % deployment_count], "parameters": {},
                        "idempotency_scope": str(ids[i % deployment_count]),
                        "state_type": (StateType.COMPLETED if done else StateType.SCHEDULED).value,
                        "state_name": "Completed" if done else "Scheduled",
                        "state_timestamp": when,
                        "expected_start_time": when if done else now + timedelta(days=1),
                        "run_count": 1 if done else 0, "created": when, "updated": when,
                    }
                )  # fmt: skip
            conn.execute(flow_runs.insert(), rows)
    return ids


def poll_query(store: SQLStore, deployment_ids: list[uuid.UUID], repeats: int) -> dict[str, object]:
    runner = RunnerRecord(name="bench")
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        claimed = store.claim_runs(deployment_ids=deployment_ids, runner=runner, limit=8)
        samples.append((time.perf_counter() - start) * 1000)
        assert claimed == []
    plan = store.explain_queue_query(deployment_ids, runner.id)
    return {"p50_ms": statistics.median(samples), "max_ms": max(samples), "plan": plan}


async def build_server_time(database_url: str, home: Path, count: int) -> float:
    from headrace import flow
    from headrace.runner import Runner
    from headrace.runner.server import build_server
    from headrace.settings import Settings

    @flow
    def scale(n: int = 0) -> int:
        return n

    runner = Runner(settings=Settings(home=home, database_url=database_url), handle_signals=False)
    for i in range(count):
        await runner.add_flow(
            scale, f"scale-{i}", entrypoint=f"{Path(__file__).parent / 'flow.py'}:touch"
        )
    start = time.perf_counter()
    await build_server(runner)
    return (time.perf_counter() - start) * 1000


async def many_runs_metrics(
    bench: Bench, database_url: str, sizes: Sizes, results: Results
) -> None:
    """M8 on the server that just measured M1: grow its store, then measure again.

    The same server, so the two M1s differ only in what is stored (a server's
    start decides much of its M1, through where the kernel puts its threads).
    """
    store = SQLStore(database_url)
    try:
        started = time.perf_counter()
        ids = await asyncio.to_thread(populate, store, sizes.m8_runs, sizes.m8_deployments)
        results.add(
            "M8 populate",
            runs=sizes.m8_runs,
            deployments=sizes.m8_deployments,
            seconds=time.perf_counter() - started,
        )
        results.add("M8 poll query", **poll_query(store, ids, 50))
    finally:
        store.close()
    await bench.m1_trigger_latency(results, key="M8 M1 with many runs")


async def run_scale_metrics(
    database_url: str | None, sizes: Sizes, results: Results, work: Path
) -> None:
    with fresh_database(database_url, work, "build") as url:
        ms = await build_server_time(url, work / "build-home", sizes.m8_deployments)
        results.add("M8 build_server", deployments=sizes.m8_deployments, ms=ms)


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(asyncio.sleep(0))

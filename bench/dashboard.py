"""The dashboard's page times with 100,000 runs and 500 deployments in the store.

Seeds a fresh database in bulk (a week of ended runs in every final state, a few
queued, three runners, a run with 1,000 log lines), then times each page as the
server answers it (in-process, no network) and prints p50/p95 per page, and the
bytes of a first load (the overview page, its stylesheet and its script).

    .venv/bin/python bench/dashboard.py
    .venv/bin/python bench/dashboard.py --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from headrace.flow_runs import LogRecord
from headrace.runner.server.dashboard_server import build_dashboard_server
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from headrace.store import AsyncStore, RunnerRecord, SQLStore
from headrace.store.dashboard import RunFilter
from headrace.store.tables import deployments, flow_runs
from scale import fresh_database

CHUNK = 5000
SPAN = timedelta(days=7)
ENDINGS = [StateType.COMPLETED] * 90 + [StateType.FAILED] * 5 + [StateType.CRASHED] * 2
ENDINGS += [StateType.CANCELLED] * 2 + [StateType.SCHEDULED]
SCHEMA = {
    "title": "Parameters",
    "type": "object",
    "properties": {
        "day": {"type": "string", "format": "date", "title": "day", "position": 0},
        "limit": {"type": "integer", "title": "limit", "default": 10, "position": 1},
        "regions": {"type": "array", "items": {"type": "string"}, "title": "regions"},
    },
    "required": ["day"],
    "definitions": {},
}


def _deployment_row(i: int, d: uuid.UUID, now: Any) -> dict[str, Any]:
    return {
        "id": d, "name": f"d{i}", "flow_name": f"flow{i % 25}", "entrypoint": "x.py:f",
        "parameter_schema": SCHEMA, "parameters": {}, "enforce_parameter_schema": True,
        "schedules": [{"schedule": {"kind": "cron", "cron": f"{i % 60} 2 * * *",
                                    "timezone": "Europe/Berlin", "day_or": True},
                       "active": True, "parameters": {}, "slug": None}],
        "tags": [], "paused": i % 10 == 0, "catchup": False, "on_shutdown": "finish",
        "retries": 0, "retry_delay_seconds": 0, "created": now, "updated": now,
    }  # fmt: skip


def _run_row(i: int, runs: int, ids: list[uuid.UUID], now: Any) -> dict[str, Any]:
    state = ENDINGS[i % len(ENDINGS)]
    created = now - SPAN * (1 - i / runs)
    queued = state == StateType.SCHEDULED
    start = None if queued else created + timedelta(seconds=1)
    end = None if queued else created + timedelta(seconds=2 + i % 90)
    deployment = ids[i % len(ids)]
    return {
        "id": uuid.uuid4(), "name": f"run-{i}", "flow_name": f"flow{(i % len(ids)) % 25}",
        "deployment_id": deployment, "parameters": {"day": "2026-12-01", "limit": i % 100},
        "idempotency_scope": str(deployment), "state_type": state.value,
        "state_name": state.value.capitalize(),
        "state_message": "Flow run raised ValueError: bad row" if state == StateType.FAILED
        else None,
        "state_timestamp": end or created,
        "expected_start_time": now + timedelta(hours=1 + i % 24) if queued else created,
        "start_time": start, "end_time": end, "run_count": 0 if queued else 1,
        "runner_name": None if queued else "bench-a", "created": created,
        "updated": end or created,
    }  # fmt: skip


def populate(store: SQLStore, runs: int, count: int) -> tuple[list[uuid.UUID], uuid.UUID]:
    """Deployments, runs and runners in bulk; returns the deployment ids and a run's id."""
    now = utcnow()
    ids = [uuid.uuid4() for _ in range(count)]
    with store.engine.begin() as conn:
        conn.execute(deployments.insert(), [_deployment_row(i, d, now) for i, d in enumerate(ids)])
        for start in range(0, runs, CHUNK):
            rows = [_run_row(i, runs, ids, now) for i in range(start, min(runs, start + CHUNK))]
            conn.execute(flow_runs.insert(), rows)
    for name in ("bench-a", "bench-b", "bench-c"):
        record = RunnerRecord(name=name)
        store.register_runner(record)
        store.heartbeat(record.id, serving=ids[: count // 3])
    last = store.read_flow_runs(limit=1)[0]
    lines = [
        LogRecord(flow_run_id=last.id, level=20, message=f"line {n}", timestamp=now)
        for n in range(1000)
    ]
    store.write_logs(lines)
    if not store.is_sqlite:  # as autovacuum leaves a table some time after a bulk load
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    return ids, last.id


async def time_pages(app: Any, paths: list[str], rounds: int) -> list[tuple[Any, ...]]:
    """Per page: p50 and p95 of the time to answer, p50 of this process's CPU time for it
    (steadier than the wall clock on a busy machine), and the page's size."""
    transport = httpx.ASGITransport(app=app)
    measured = []
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for path in paths:
            walls, cpus = [], []
            size = 0
            for i in range(rounds + 2):
                began, cpu = time.perf_counter(), time.process_time()
                answer = await client.get(path)
                wall, used = time.perf_counter() - began, time.process_time() - cpu
                assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
                size = len(answer.content)
                if i >= 2:  # two warm-up requests
                    walls.append(wall * 1000)
                    cpus.append(used * 1000)
            walls.sort()
            p95 = walls[min(len(walls) - 1, int(len(walls) * 0.95))]
            measured.append((path, statistics.median(walls), p95, statistics.median(cpus), size))
    return measured


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--deployments", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as work,
        fresh_database(args.database_url, Path(work), "dashboard") as url,
    ):
        sync = SQLStore(url)
        began = time.perf_counter()
        ids, run_id = await asyncio.to_thread(populate, sync, args.runs, args.deployments)
        print(f"seeded {args.runs} runs, {args.deployments} deployments "
              f"in {time.perf_counter() - began:.1f} s ({sync.dialect})")  # fmt: skip
        edge = sync.read_run_page(RunFilter(), limit=1, offset=min(args.runs - 1, 99 * 50 - 1))[0]
        deep = f"{edge.created.isoformat()}|{edge.id}"  # the 100th page, as its link has it
        store = AsyncStore(sync)
        app = build_dashboard_server(store, Settings(home=Path(work), database_url=url))
        paths = [
            "/ui/",
            "/ui/deployments",
            f"/ui/deployments/{ids[7]}",
            "/ui/runs",
            "/ui/runs?state=FAILED&state=CRASHED",
            f"/ui/runs?deployment={ids[3]}",
            f"/ui/runs?page=100&older={quote(deep)}",
            f"/ui/runs/{run_id}",
            "/ui/runners",
        ]
        results = await time_pages(app, paths, args.rounds)
        print(f"{'page':44} {'p50 ms':>8} {'p95 ms':>8} {'CPU p50':>8} {'KB':>7}")
        for path, p50, p95, cpu, size in results:
            print(f"{path[:44]:44} {p50:8.1f} {p95:8.1f} {cpu:8.1f} {size / 1024:7.1f}")
        first = await time_pages(app, ["/ui/static/style.css", "/ui/static/live.js"], 1)
        total = results[0][-1] + sum(row[-1] for row in first)
        print(f"first load of /ui/ (page, stylesheet, script): {total / 1024:.1f} KB")
        store.close()


if __name__ == "__main__":
    asyncio.run(main())

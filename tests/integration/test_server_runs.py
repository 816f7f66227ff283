"""The run routes in-process: reading, listing and cancelling runs, reading logs, deployments."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

import pytest

from headrace import new_runs
from headrace.flow_runs import LogRecord
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from headrace.store.records import MAX_PAGE
from tests.helpers import running, wait_for_state
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


async def test_run_routes(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        created = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 2})
        run_id = created.json()["flow_run_id"]
        run = (await c.get(f"/flow_runs/{run_id}")).json()
        assert run["parameters"] == {"x": 2, "y": 10}
        assert run["run_count"] == 1
        assert run["result"] == 12
        assert run["start_time"] and run["end_time"]
        assert [s["type"] for s in run["state_history"]] == [
            "SCHEDULED",
            "PENDING",
            "RUNNING",
            "COMPLETED",
        ]
        listed = await c.get(
            "/flow_runs", params={"deployment_id": ids["adder"], "state": ["COMPLETED"]}
        )
        assert [r["id"] for r in listed.json()] == [run_id]
        assert (await c.get("/flow_runs", params={"state": ["FAILED"]})).json() == []
        assert len((await c.get("/flow_runs", params={"limit": 1, "offset": 0})).json()) == 1
        assert (await c.get("/flow_runs", params={"offset": 5})).json() == []
        assert (await c.get("/flow_runs", params={"state": "nope"})).status_code == 422
        assert (await c.get("/flow_runs", params={"limit": 0})).status_code == 422
        logs = (await c.get(f"/flow_runs/{run_id}/logs")).json()
        assert "adding 2 and 10" in [line["message"] for line in logs]
        assert {"id", "level", "level_name", "message", "timestamp"} <= set(logs[0])
        after = (
            await c.get(f"/flow_runs/{run_id}/logs", params={"after_id": logs[0]["id"]})
        ).json()
        assert len(after) == len(logs) - 1
        conflict = await c.post(f"/flow_runs/{run_id}/cancel")
        assert conflict.status_code == 409
        unknown = uuid4()
        for path in (f"/flow_runs/{unknown}", f"/flow_runs/{unknown}/logs"):
            assert (await c.get(path)).status_code == 404
        assert (await c.post(f"/flow_runs/{unknown}/cancel")).status_code == 404
        for path in ("/flow_runs/not-a-uuid", "/flow_runs/123/logs"):
            assert (await c.get(path)).status_code == 422
        deployments = (await c.get("/deployments")).json()
        adder = next(d for d in deployments if d["name"] == "adder")
        assert adder["run_url"] == f"/deployment/{ids['adder']}/run"
        assert adder["parameters"] == {"y": 10}
        assert adder["parameter_schema"]["required"] == ["x"]
        assert {"id", "flow_name", "schedules", "enforce_parameter_schema"} <= set(adder)


async def test_a_full_page_of_logs_links_to_the_next(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    run, _ = await runner.store.create_flow_run(
        new_runs.for_deployment(await runner.store.read_deployment(ids["adder"]), {"x": 1})
    )
    now = utcnow()
    await runner.store.write_logs(
        [
            LogRecord(flow_run_id=run.id, level=20, message=f"line {i}", timestamp=now)
            for i in range(MAX_PAGE + 5)
        ]
    )
    lines: list[str] = []
    async with client(app) as c:
        url: str | None = f"/flow_runs/{run.id}/logs"
        while url is not None:
            response = await c.get(url)
            lines += [line["message"] for line in response.json()]
            url = response.links.get("next", {}).get("url")
    assert lines == [f"line {i}" for i in range(MAX_PAGE + 5)]


async def test_cancel_a_running_run(settings: Settings, tmp_path: Path) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        body = {"t0": 3, "out": str(tmp_path / "t"), "sleep": 30}
        created = await c.post(f"/deployment/{ids['toucher']}/run", json=body)
        run_id = UUID(created.json()["flow_run_id"])
        await wait_for_state(runner.store, run_id, {StateType.RUNNING})
        response = await c.post(f"/flow_runs/{run_id}/cancel")
        assert response.status_code == 202
        assert response.json()["state"]["type"] == "CANCELLING"
        done = await wait_for_state(runner.store, run_id, timeout=15)
        assert done.state.type == StateType.CANCELLED

"""The webserver answers through the drain: readiness says so, runs can be watched and
cancelled, and it closes once the last run has ended."""

from __future__ import annotations

import asyncio
from uuid import UUID

import httpx
import pytest

from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import eventually, free_port, make_runner, wait_for_state

pytestmark = pytest.mark.timeout(90)


async def test_a_draining_runner_answers_until_its_last_run_ends(
    sqlite_settings: Settings,
) -> None:
    port = free_port()
    settings = sqlite_settings.model_copy(
        update={
            "runner_server_host": "127.0.0.1",
            "runner_server_port": port,
            "runner_shutdown_grace_seconds": 600,
        }
    )
    runner = make_runner(settings, webserver=True)
    deployment_id = await runner.add_flow(basic.sleepy, "sleepy")
    task = asyncio.create_task(runner.start())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        await eventually(
            lambda: _get(http, "/ready"), lambda r: r is not None and r.status_code == 200
        )
        run_id = (
            await http.post(f"/deployment/{deployment_id}/run", json={"seconds": 600})
        ).json()["flow_run_id"]
        await wait_for_state(runner.store, UUID(run_id), {StateType.RUNNING}, timeout=30)
        assert (await http.post("/shutdown")).status_code == 200
        ready = await eventually(
            lambda: http.get("/ready"), lambda r: r.status_code == 503, what="/ready to say so"
        )
        assert ready.json()["message"] == "The runner is stopping"
        # Its poll has stopped, on purpose: liveness must not get it restarted now.
        await asyncio.sleep(
            3 * settings.runner_server_missed_polls_tolerance * runner.query_seconds
        )
        assert (await http.get("/health")).status_code == 200
        running = await http.get(f"/flow_runs/{run_id}")
        assert running.json()["state"]["type"] == "RUNNING"
        # A trigger now is kept for a runner that serves (another, or this one restarted).
        later = await http.post(f"/deployment/{deployment_id}/run", json={"seconds": 0})
        assert later.status_code == 201, later.text
        assert (await http.post(f"/flow_runs/{run_id}/cancel")).status_code in (200, 202)
        await asyncio.wait_for(task, timeout=30)  # the drain ended with its run
        with pytest.raises(httpx.TransportError):
            await http.get("/health")
    async with get_client(settings) as client:
        done = await client.read_flow_run(UUID(run_id))
        waiting = await client.read_flow_run(UUID(later.json()["flow_run_id"]))
    assert done.state.type == StateType.CANCELLED, done.state
    assert waiting.state.type == StateType.SCHEDULED, "a draining runner claimed it"


async def _get(http: httpx.AsyncClient, path: str) -> httpx.Response | None:
    try:
        return await http.get(path)
    except httpx.TransportError:
        return None

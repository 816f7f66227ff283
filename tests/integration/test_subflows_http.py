"""Subflows as users see them: triggered over HTTP, listed and inspected over HTTP and the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from uuid import UUID

import pytest
from typer.testing import CliRunner, Result

from headrace import store as store_module
from headrace.cli import app
from headrace.client import get_client
from headrace.runner.server import build_server
from headrace.settings import Settings
from tests.flows import subflows
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import client as asgi_client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(settings: Settings) -> Iterator[dict[str, str | None]]:
    yield {
        "HEADRACE_HOME": str(settings.home),
        "HEADRACE_DATABASE_URL": settings.resolved_database_url,
        "COLUMNS": "200",
    }
    store = store_module._stores.pop(settings.resolved_database_url, None)
    if store is not None:
        store.close()


async def invoke(env: dict[str, str | None], *args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


async def test_a_subflow_triggered_over_http_is_listed_and_inspected(
    settings: Settings, env: dict[str, str | None]
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent)
    async with running(runner), get_client(settings) as client:
        app_ = await build_server(runner)
        async with asgi_client(app_) as http:
            created = await http.post(f"/deployment/{deployment}/run", json={"x": 7})
            run_id = created.json()["flow_run_id"]
            await wait_for_state(client.store, UUID(run_id))
            parent = (await http.get(f"/flow_runs/{run_id}")).json()
            children = (await http.get(f"/flow_runs?parent_flow_run_id={run_id}")).json()
            child_id = children[0]["id"]
            child = (await http.get(f"/flow_runs/{child_id}")).json()
            child_result = await http.get(f"/flow_runs/{child_id}/result")
            bad = await http.get("/flow_runs?parent_flow_run_id=not-a-uuid")
            unknown = await http.get(f"/flow_runs/{subflows.UNKNOWN_RUN}/result")
        inspected = await invoke(env, "runs", "inspect", run_id)
        inspected_child = await invoke(env, "runs", "inspect", child_id)
        listed = await invoke(env, "runs", "ls", "--parent", run_id, "--json")
        as_json = await invoke(env, "runs", "inspect", run_id, "--json")
    assert created.status_code == 201
    assert parent["state"]["type"] == "COMPLETED" and parent["parent_flow_run_id"] is None
    assert len(children) == 1 and children[0]["parent_flow_run_id"] == run_id
    assert child["flow_name"] == "double" and child["state"]["type"] == "COMPLETED"
    assert [s["name"] for s in child["state_history"]] == ["Running", "Completed"]
    assert child_result.status_code == 200 and child_result.json()["value"] == 14
    assert bad.status_code == 400 and "parent_flow_run_id" in bad.json()["message"]
    assert unknown.status_code == 404
    assert inspected.exit_code == 0, inspected.stderr
    assert "Child runs" in inspected.stdout and child_id in inspected.stdout
    assert inspected_child.exit_code == 0, inspected_child.stderr
    assert f"Parent run  {run_id}" in inspected_child.stdout
    assert listed.exit_code == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [child_id]
    assert [c["id"] for c in json.loads(as_json.stdout)["child_flow_runs"]] == [child_id]


async def test_a_result_json_cannot_hold_says_so(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.unencodable_result)
    typed = await runner.add_flow(subflows.typed_result)
    async with running(runner), get_client(settings) as client:
        app_ = await build_server(runner)
        async with asgi_client(app_) as http:
            run = (await http.post(f"/deployment/{deployment}/run")).json()["flow_run_id"]
            other = (await http.post(f"/deployment/{typed}/run")).json()["flow_run_id"]
            done = await wait_for_state(client.store, UUID(run))
            await wait_for_state(client.store, UUID(other))
            result = await http.get(f"/flow_runs/{run}/result")
            typed_result = await http.get(f"/flow_runs/{other}/result")
    assert "The result (object) is not JSON-encodable" in (done.state.message or "")
    assert result.status_code == 409 and "not JSON-encodable" in result.json()["message"]
    assert typed_result.json() == {"day": "2026-12-07", "amount": "1.50"}

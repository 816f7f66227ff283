"""The dashboard's run form refuses a run when the backlog is full, as the trigger routes
do: on a runner's webserver against its backlog, on ``headrace ui`` against the backlogs
of the runners serving the deployment, as they stored them."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from headrace.deployments import DeploymentSpec
from headrace.runner.server import build_server, stored_backlogs
from headrace.runner.server.dashboard_server import build_dashboard_server
from headrace.settings import Settings
from headrace.store import AsyncStore, RunnerRecord
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_the_run_form_is_refused_when_the_runners_backlog_is_full(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"runner_backlog_limit": 1})
    runner, ids = await served(limited)
    app = await build_server(runner)  # not started: nothing leaves the queue
    route = f"/ui/deployments/{ids['adder']}/run"
    async with client(app) as c:
        accepted = await c.post(route, content="x=1", headers=FORM)
        assert accepted.status_code == 303
        refused = await c.post(route, content="x=2", headers=FORM)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["X-Queue-Depth"] == "1"
        retry = refused.headers["Retry-After"]
        reason = f"The runner&#39;s backlog is full (1 queued runs); retry in {retry} s"
        assert reason in refused.text
        assert 'name="x" value="2"' in refused.text.replace("  ", " "), "the form keeps its values"
        api = await c.post(f"/deployment/{ids['adder']}/run", json={"x": 3})
        assert api.status_code == 429, "the same backlog as the trigger route's"
    assert [r.parameters["x"] for r in await runner.store.read_flow_runs()] == [1]


async def register(store: AsyncStore, deployment_id: UUID, backlog_limit: int | None) -> None:
    """A runner elsewhere, serving the deployment, alive."""
    record = RunnerRecord(
        name=f"far-{backlog_limit}", host="elsewhere", backlog_limit=backlog_limit
    )
    await store.register_runner(record)
    await store.heartbeat(record.id, serving=[deployment_id])


async def test_headrace_ui_refuses_when_every_serving_runner_is_full(
    settings: Settings, async_store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stored_backlogs, "MAX_ESTIMATE_AGE_SECONDS", 0.0)  # count every time
    deployment = await async_store.upsert_deployment(
        DeploymentSpec(name="nightly", flow_name="etl", entrypoint="x.py:etl")
    )
    app = build_dashboard_server(async_store, settings)
    form_route, api_route = (
        f"/ui/deployments/{deployment.id}/run",
        f"/deployment/{deployment.id}/run",
    )
    async with client(app) as c:
        assert (await c.post(api_route, json={})).status_code == 201, "nobody serves it: no limit"
        await register(async_store, deployment.id, backlog_limit=1)
        refused = await c.post(form_route, content="", headers=FORM)
        assert refused.status_code == 429 and refused.headers["X-Queue-Depth"] == "1"
        assert "The runner&#39;s backlog is full (1 queued runs); retry in" in refused.text
        api = await c.post(api_route, json={})
        assert api.status_code == 429 and api.json()["message"].startswith("The runner's")
        keyed = await c.post(api_route, json={}, headers={"Idempotency-Key": "k"})
        assert keyed.status_code == 429
        await register(async_store, deployment.id, backlog_limit=2)  # one with room
        assert (await c.post(form_route, content="", headers=FORM)).status_code == 303
        assert len(await async_store.read_flow_runs()) == 2


async def test_headrace_ui_remembers_a_refusal_for_a_moment(
    settings: Settings, async_store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stored_backlogs, "MAX_ESTIMATE_AGE_SECONDS", 60.0)  # no count meanwhile
    deployment = await async_store.upsert_deployment(
        DeploymentSpec(name="nightly", flow_name="etl", entrypoint="x.py:etl")
    )
    await register(async_store, deployment.id, backlog_limit=1)
    app = build_dashboard_server(async_store, settings)
    route = f"/deployment/{deployment.id}/run"
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = async_store.sync.engine
    async with client(app) as c:
        assert (await c.post(route, json={})).status_code == 201
        assert (await c.post(route, json={})).status_code == 429
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            refused = [(await c.post(route, json={})).status_code for _ in range(10)]
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
    assert refused == [429] * 10
    assert not [s for s in statements if "runner" in s], "no count: the refusal is remembered"

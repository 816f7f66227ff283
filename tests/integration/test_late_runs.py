"""Runs nobody runs read as Late, over the client and over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from headrace.client import get_client
from headrace.flow_runs import NewFlowRun
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from tests.flows import basic
from tests.helpers import make_runner
from tests.integration.server_app import client as http_client

pytestmark = pytest.mark.timeout(60)


async def queue_runs(settings: Settings) -> tuple[UUID, UUID, UUID]:
    """A deployment nobody serves, with a run due ten minutes ago and a run due now."""
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add, "adder", parameters={"x": 1})
    store = runner.store
    overdue, _ = await store.create_flow_run(
        NewFlowRun(
            flow_name="add",
            deployment_id=deployment_id,
            expected_start_time=utcnow() - timedelta(minutes=10),
        )
    )
    fresh, _ = await store.create_flow_run(
        NewFlowRun(flow_name="add", deployment_id=deployment_id, expected_start_time=utcnow())
    )
    return deployment_id, overdue.id, fresh.id


async def test_an_overdue_run_reads_as_late_over_the_client(settings: Settings) -> None:
    _, overdue, fresh = await queue_runs(settings)
    async with get_client(settings) as client:
        late = await client.read_flow_run(overdue)
        assert (late.state.type, late.state.name) == (StateType.SCHEDULED, "Late")
        assert (await client.read_flow_run(fresh)).state.name == "Scheduled"
        listed = {r.id: r.state.name for r in await client.read_flow_runs()}
        assert listed == {overdue: "Late", fresh: "Scheduled"}
        # Shown, never written: the stored state is what any runner claims.
        assert [s.name for s in await client.read_state_history(overdue)] == ["Scheduled"]
        by_state = await client.read_flow_runs(states=[StateType.SCHEDULED])
        assert {r.id for r in by_state} == {overdue, fresh}

    patient = settings.model_copy(update={"late_runs_after_seconds": 3600})
    async with get_client(patient) as client:
        assert (await client.read_flow_run(overdue)).state.name == "Scheduled"


async def test_an_overdue_run_reads_as_late_over_http(settings: Settings) -> None:
    _, overdue, fresh = await queue_runs(settings)
    runner = make_runner(settings)
    await runner.add_flow(basic.touch, "toucher")  # serves another deployment only
    app = await build_server(runner)
    async with http_client(app) as c:
        one = (await c.get(f"/flow_runs/{overdue}")).json()
        assert (one["state"]["type"], one["state"]["name"]) == ("SCHEDULED", "Late")
        assert [s["name"] for s in one["state_history"]] == ["Scheduled"]
        listed = {r["id"]: r["state"]["name"] for r in (await c.get("/flow_runs")).json()}
        assert listed == {str(overdue): "Late", str(fresh): "Scheduled"}

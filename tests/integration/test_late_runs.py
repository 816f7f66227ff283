"""Runs nobody runs: overdue runs read as Late, and runners record what they serve.

On SQLite and PostgreSQL, over the client and over HTTP.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest

from headrace.client import get_client
from headrace.deployments import DeploymentSpec
from headrace.flow_runs import NewFlowRun
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from headrace.store import SQLStore
from headrace.store.records import RunnerRecord
from headrace.store.runners import FORGET_SERVING_AFTER
from headrace.store.tables import runners
from tests.flows import basic
from tests.helpers import eventually, make_runner, running
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


async def test_a_runner_records_what_it_serves_while_it_runs(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add, "adder")
    async with get_client(settings) as client:
        assert await client.read_serving_runners([deployment_id]) == {}
        async with running(runner):
            serving = (await client.read_serving_runners())[deployment_id]
            assert [(r.id, r.pid, r.host, r.alive) for r in serving] == [
                (runner.record.id, runner.record.pid, runner.record.host, True)
            ]
            later = await runner.add_flow(basic.touch, "toucher")
            await eventually(
                lambda: client.read_serving_runners([later]),
                lambda found: later in found,
                what="the runner to record the deployment it serves since",
            )
        # Stopped: it serves nothing any more.
        assert await client.read_serving_runners([deployment_id, later]) == {}


def test_the_store_keeps_each_runners_served_deployments(store: SQLStore) -> None:
    one = store.upsert_deployment(DeploymentSpec(name="one", flow_name="add")).id
    two = store.upsert_deployment(DeploymentSpec(name="two", flow_name="add")).id
    here = RunnerRecord(name="here")
    store.register_runner(here)
    store.heartbeat(here.id, serving=[one, two])
    assert sorted(d for d, _ in store.read_serving_runners()) == sorted([one, two])
    store.heartbeat(here.id)  # a plain heartbeat leaves what it serves alone
    store.heartbeat(here.id, serving=[two])
    assert [(d, r.id) for d, r in store.read_serving_runners([one, two])] == [(two, here.id)]

    store.heartbeat(here.id, stopped=True)
    assert store.read_serving_runners() == []

    gone, new = RunnerRecord(name="gone"), RunnerRecord(name="new")
    for runner in (gone, new):
        store.register_runner(runner)
        store.heartbeat(runner.id, serving=[one])
    with store.engine.begin() as conn:  # it died long ago, never to beat again
        silent_since = utcnow() - FORGET_SERVING_AFTER * 2
        conn.execute(runners.update().where(runners.c.id == gone.id).values(heartbeat=silent_since))
    assert {r.id for _, r in store.read_serving_runners([one])} == {gone.id, new.id}
    store.heartbeat(new.id, serving=[one, two])  # a change recorded forgets the long dead
    assert {r.id for _, r in store.read_serving_runners([one])} == {new.id}

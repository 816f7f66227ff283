"""Runners record the deployments they serve: while they run, and no longer once stopped."""

from __future__ import annotations

import pytest

from headrace.client import get_client
from headrace.deployments import DeploymentSpec
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.store import SQLStore
from headrace.store.records import RunnerRecord
from headrace.store.runners import FORGET_SERVING_AFTER
from headrace.store.tables import runners
from tests.flows import basic
from tests.helpers import eventually, make_runner, running

pytestmark = pytest.mark.timeout(60)


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

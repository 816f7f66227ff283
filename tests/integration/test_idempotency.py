"""An Idempotency-Key reused with other parameters is refused, never answered with the old run.

On SQLite and PostgreSQL, through the trigger routes (422 naming the key), the
Python client and the store (``IdempotencyKeyReused``). Parameters are compared
as the run stored them: after the deployment's defaults are merged and the
flow's validation has coerced them, key order aside.
"""

from __future__ import annotations

import asyncio

import pytest

from headrace.client import get_client
from headrace.exceptions import IdempotencyKeyReused
from headrace.flow_runs import NewFlowRun
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.store import SQLStore
from tests.flows import nested
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)

KEY = {"Idempotency-Key": "order-42"}


async def test_a_deployment_trigger_with_other_parameters_is_422(settings: Settings) -> None:
    runner, ids = await served(settings)  # adder: add(x, y) with the default y=10
    app = await build_server(runner)
    route = f"/deployment/{ids['adder']}/run"
    async with client(app) as c:
        first = await c.post(route, json={"x": 1}, headers=KEY)
        assert first.status_code == 201
        for same in ({"x": 1}, {"x": 1, "y": 10}, {"y": 10, "x": "1"}):
            again = await c.post(route, json=same, headers=KEY)
            assert again.status_code == 200, (same, again.text)
            assert again.json() == first.json()
        for other in ({"x": 2}, {"x": 1, "y": 11}, {"x": -1}):
            refused = await c.post(route, json=other, headers=KEY)
            assert refused.status_code == 422, (other, refused.text)
            assert "'order-42'" in refused.json()["message"]
            assert "different parameters" in refused.json()["message"]
    (run,) = await runner.store.read_flow_runs()
    assert run.parameters == {"x": 1, "y": 10}


async def test_a_flow_trigger_with_other_parameters_is_422(settings: Settings) -> None:
    runner, _ = await served(settings)
    app = await build_server(runner)
    body = {"entrypoint": "tests.flows.nested:double", "parameters": {"x": 2}}
    async with client(app) as c:
        first = await c.post("/flow/run", json=body, headers=KEY)
        assert first.status_code == 201
        again = await c.post("/flow/run", json=body, headers=KEY)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        other = {**body, "parameters": {"x": 3}}
        refused = await c.post("/flow/run", json=other, headers=KEY)
        assert refused.status_code == 422
        assert "'order-42'" in refused.json()["message"]
    assert len(await runner.store.read_flow_runs()) == 1


async def test_a_full_backlog_still_refuses_a_reused_key_with_422(settings: Settings) -> None:
    runner, ids = await served(settings.model_copy(update={"runner_backlog_limit": 1}))
    app = await build_server(runner)
    route = f"/deployment/{ids['double']}/run"
    async with client(app) as c:
        assert (await c.post(route, json={"x": 1}, headers=KEY)).status_code == 201
        refused = await c.post(route, json={"x": 2}, headers=KEY)
        assert refused.status_code == 422, refused.text
    assert len(await runner.store.read_flow_runs()) == 1


async def test_concurrent_requests_with_one_key_and_two_bodies(settings: Settings) -> None:
    """Committed together in one batch, the second still sees the first's parameters."""
    runner, ids = await served(settings)
    app = await build_server(runner)
    route = f"/deployment/{ids['double']}/run"
    async with client(app) as c:
        responses = await asyncio.gather(
            *(c.post(route, json={"x": x}, headers=KEY) for x in (1, 2, 1, 2))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 201, 422, 422], [r.text for r in responses]
    assert len(await runner.store.read_flow_runs()) == 1


async def test_the_client_raises_for_a_reused_key(settings: Settings) -> None:
    _, ids = await served(settings)
    async with get_client(settings) as c:
        run = await c.create_flow_run_from_deployment(ids["adder"], {"x": 1}, "nightly")
        same = await c.create_flow_run_from_deployment(ids["adder"], {"x": 1, "y": 10}, "nightly")
        assert same.id == run.id
        with pytest.raises(IdempotencyKeyReused, match=r"'nightly'.*different parameters"):
            await c.create_flow_run_from_deployment(ids["adder"], {"x": 2}, "nightly")
        adhoc = await c.create_flow_run(nested.double, {"x": 1}, idempotency_key="adhoc")
        with pytest.raises(IdempotencyKeyReused, match="'adhoc'"):
            await c.create_flow_run(nested.double, {"x": 5}, idempotency_key="adhoc")
        runs = await c.read_flow_runs()
    assert {r.id for r in runs} == {run.id, adhoc.id}


def test_the_store_compares_parameters_as_stored(store: SQLStore) -> None:
    first = NewFlowRun(flow_name="f", parameters={"a": 1, "b": [1, 2]}, idempotency_key="k")
    run, created = store.create_flow_run(first)
    assert created
    reordered = first.model_copy(update={"parameters": {"b": [1, 2], "a": 1}})
    assert store.create_flow_run(reordered) == (run, False)
    assert store.read_flow_run_by_key(reordered) == run
    other = first.model_copy(update={"parameters": {"a": 1, "b": [2, 1]}})
    with pytest.raises(IdempotencyKeyReused, match="'k'"):
        store.create_flow_run(other)
    with pytest.raises(IdempotencyKeyReused):
        store.read_flow_run_by_key(other)
    batch = store.create_flow_runs_each([reordered, other])
    assert batch[0] == (run, False)
    assert isinstance(batch[1], IdempotencyKeyReused)
    assert [r.id for r in store.read_flow_runs()] == [run.id]

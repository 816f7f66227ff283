"""The trigger routes in-process: parameters, request bodies, backpressure, idempotency."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from headrace.runner.server import backlog, build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic, extra
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


async def test_trigger_merges_defaults_commits_first_and_runs(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        response = await c.post(f"/deployment/{ids['adder']}/run", json={"x": 5})
        assert response.status_code == 201, response.text
        assert set(response.json()) == {"flow_run_id"}
        assert response.headers["X-Queue-Depth"].isdigit()
        run_id = UUID(response.json()["flow_run_id"])
        stored = await runner.store.read_flow_run(run_id)  # committed before the answer
        assert stored.parameters == {"x": 5, "y": 10}
        done = await wait_for_state(runner.store, run_id)
        assert done.state.type == StateType.COMPLETED
        assert done.result == 15


@pytest.mark.parametrize(
    ("body", "bad"),
    [
        ({"x": "five"}, ["x"]),
        ({"x": 1, "z": 2}, ["z"]),
        ({}, ["x"]),
        ({"x": 1.5, "y": "no"}, ["x", "y"]),
    ],
)
async def test_trigger_validates_and_names_each_parameter(
    sqlite_settings: Settings, body: dict[str, Any], bad: list[str]
) -> None:
    runner = make_runner(sqlite_settings)
    deployment_id = await runner.add_flow(basic.add, "adder")
    app = await build_server(runner)
    async with client(app) as c:
        response = await c.post(f"/deployment/{deployment_id}/run", json=body)
    assert response.status_code == 400, response.text
    named = sorted(e["parameter"] for e in response.json()["errors"])
    assert named == bad
    assert await runner.store.read_flow_runs(deployment_id=deployment_id) == []


async def test_both_trigger_routes_check_parameters_as_the_run_will(settings: Settings) -> None:
    """The deployment route checks what a schema cannot say (a duration's text)."""
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(extra.every, "hourly")
    app = await build_server(runner)
    route = f"/deployment/{deployment_id}/run"
    flow_run = {"entrypoint": "tests/flows/extra.py:every"}
    async with client(app) as c:
        for body in ({"period": "garbage"}, {"period": "PT1H", "since": "yesterday"}):
            by_deployment = await c.post(route, json=body)
            by_flow = await c.post("/flow/run", json={**flow_run, "parameters": body})
            for response in (by_deployment, by_flow):
                assert response.status_code == 400, response.text
            assert by_deployment.json()["errors"] == by_flow.json()["errors"]
        good = await c.post(route, json={"period": 90, "since": "2026-01-31"})
        assert good.status_code == 201, good.text
    (run,) = await runner.store.read_flow_runs(deployment_id=deployment_id)
    assert run.parameters == {"period": "PT1M30S", "since": "2026-01-31"}


@pytest.mark.parametrize(
    "content",
    [
        b"[1, 2]",
        b'"x"',
        b"{not json",
        b'{"x": NaN}',
        b'{"x": 1e999}',
        b'{"x": "a\\u0000"}',
        b'{"x": "a\\ud800"}',
        b"null",
    ],
)
async def test_trigger_refuses_bodies_that_are_not_json_objects(
    sqlite_settings: Settings, content: bytes
) -> None:
    runner = make_runner(sqlite_settings)
    deployment_id = await runner.add_flow(basic.add, "adder", enforce_parameter_schema=False)
    app = await build_server(runner)
    async with client(app) as c:
        response = await c.post(f"/deployment/{deployment_id}/run", content=content)
    assert response.status_code == 400, response.text
    assert "message" in response.json()


async def test_unenforced_schema_accepts_anything_and_empty_body_means_defaults(
    sqlite_settings: Settings,
) -> None:
    runner = make_runner(sqlite_settings)
    loose = await runner.add_flow(basic.add, "loose", enforce_parameter_schema=False)
    defaults = await runner.add_flow(basic.add, "defaults", parameters={"x": 7})
    app = await build_server(runner)
    async with client(app) as c:
        assert (await c.post(f"/deployment/{loose}/run", json={"x": "a"})).status_code == 201
        response = await c.post(f"/deployment/{defaults}/run")
        assert response.status_code == 201
    run = await runner.store.read_flow_run(UUID(response.json()["flow_run_id"]))
    assert run.parameters == {"x": 7}


async def test_complex_nested_model_arguments(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    shape = {"name": "tri", "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}, {"x": 5, "y": 6}]}
    async with running(runner), client(app) as c:
        bad = {"name": "tri", "points": [{"x": "one", "y": 2}]}
        response = await c.post(f"/deployment/{ids['complex']}/run", json={"shape": bad})
        assert response.status_code == 400
        assert [e["parameter"] for e in response.json()["errors"]] == ["shape.points.0.x"]
        response = await c.post(
            f"/deployment/{ids['complex']}/run?wait=20", json={"shape": shape, "scale": 2}
        )
        assert response.status_code == 200, response.text
        assert response.json()["state"]["type"] == "COMPLETED"
        assert response.json()["result"] == {"name": "tri", "points": 3, "total": 42.0}


async def test_full_backlog_is_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(update={"runner_backlog_limit": 2})
    runner, ids = await served(limited)
    app = await build_server(runner)  # not started: nothing leaves the queue
    async with client(app) as c:
        for expected_depth in ("1", "2"):
            response = await c.post(f"/deployment/{ids['double']}/run", json={"x": 1})
            assert response.status_code == 201
            assert response.headers["X-Queue-Depth"] == expected_depth
        full = await c.post(f"/deployment/{ids['double']}/run", json={"x": 1})
        assert full.status_code == 429
        assert int(full.headers["Retry-After"]) >= 1
        assert full.headers["X-Queue-Depth"] == "2"
        double = {"entrypoint": "tests.flows.nested:double", "parameters": {"x": 1}}
        assert (await c.post("/flow/run", json=double)).status_code == 429
        missing = {"entrypoint": "tests.flows.nested:x"}
        assert (await c.post("/flow/run", json=missing)).status_code == 404, "404 comes first"
        invalid = {"entrypoint": "tests.flows.nested:double"}
        assert (await c.post("/flow/run", json=invalid)).status_code == 400, "400 comes first"
    assert len(await runner.store.read_flow_runs()) == 2


async def test_a_full_backlog_refuses_without_asking_the_database(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backlog, "MAX_ESTIMATE_AGE_SECONDS", 60.0)  # no refresh meanwhile
    limited = settings.model_copy(update={"runner_backlog_limit": 2})
    runner, ids = await served(limited)
    app = await build_server(runner)  # not started: nothing leaves the queue
    route = f"/deployment/{ids['double']}/run"
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = runner.store.sync.engine
    async with client(app) as c:
        for _ in range(2):
            assert (await c.post(route, json={"x": 1})).status_code == 201
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            refused = [(await c.post(route, json={"x": 1})).status_code for _ in range(20)]
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
    assert refused == [429] * 20
    assert statements == [], "a refusal without an Idempotency-Key needs no query"


async def test_a_known_idempotency_key_gets_its_run_even_when_the_backlog_is_full(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"runner_backlog_limit": 1})
    runner, ids = await served(limited)
    app = await build_server(runner)  # not started: nothing leaves the queue
    route = f"/deployment/{ids['double']}/run"
    async with client(app) as c:
        first = await c.post(route, json={"x": 1}, headers={"Idempotency-Key": "nightly"})
        assert first.status_code == 201
        again = await c.post(route, json={"x": 1}, headers={"Idempotency-Key": "nightly"})
        assert again.status_code == 200, again.text
        assert again.json() == first.json()
        other = await c.post(route, json={"x": 1}, headers={"Idempotency-Key": "another"})
        assert other.status_code == 429
    assert len(await runner.store.read_flow_runs()) == 1


async def test_flow_run_body_with_a_misspelt_field_is_refused(settings: Settings) -> None:
    runner, _ = await served(settings)
    app = await build_server(runner)
    typo = {"entrypoint": "tests.flows.nested:double", "parameter": {"x": 1}}
    async with client(app) as c:
        response = await c.post("/flow/run", json=typo)
    assert response.status_code == 400, response.text
    assert [error["loc"] for error in response.json()["errors"]] == [["parameter"]]
    assert await runner.store.read_flow_runs() == []


async def test_idempotency_under_concurrent_requests(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    headers = {"Idempotency-Key": "order-42"}
    async with client(app) as c:
        responses = await asyncio.gather(
            *(
                c.post(f"/deployment/{ids['double']}/run", json={"x": 1}, headers=headers)
                for _ in range(20)
            )
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] * 19 + [201]
        assert len({r.json()["flow_run_id"] for r in responses}) == 1
        flow_runs = [
            await c.post(
                "/flow/run", json={"entrypoint": "tests.flows.nested:double"}, headers=headers
            )
            for _ in range(2)
        ]
        assert [r.status_code for r in flow_runs] == [400, 400], "double needs x"
        flow_runs = [
            await c.post(
                "/flow/run",
                json={"entrypoint": "tests.flows.nested:double", "parameters": {"x": 2}},
                headers=headers,
            )
            for _ in range(2)
        ]
        assert [r.status_code for r in flow_runs] == [201, 200]
        assert flow_runs[0].json()["id"] == flow_runs[1].json()["id"]
        bad_key = await c.post(
            f"/deployment/{ids['double']}/run", json={"x": 1}, headers={"Idempotency-Key": "a b"}
        )
        assert bad_key.status_code == 422
    assert len(await runner.store.read_flow_runs()) == 2

"""The webserver app in-process: its routes, the runner routes, errors as statuses, OpenAPI."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from headrace.runner.server import build_server, get_subflow_schemas
from headrace.settings import Settings
from headrace.states import utcnow
from tests.flows import basic, extra
from tests.helpers import eventually, make_runner, running
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


async def test_one_run_route_per_deployment_and_no_others(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    routes = [r for r in app.routes if getattr(r, "path", "").startswith("/deployment/")]
    assert {getattr(r, "path", "") for r in routes} == {
        f"/deployment/{i}/run" for i in ids.values()
    }
    assert {getattr(r, "name", "") for r in routes} == {f"Run {name}" for name in ids}
    async with client(app) as c:
        response = await c.post(f"/deployment/{uuid4()}/run", json={})
        assert response.status_code == 404
        assert response.json() == {"message": "Deployment not found"}


async def test_a_hostile_body_gets_a_short_answer(sqlite_settings: Settings) -> None:
    runner = make_runner(sqlite_settings)
    deployment_id = await runner.add_flow(basic.add, "adder")
    app = await build_server(runner)
    body = {"k" * 50_000: 1, "x": 1} | {f"unknown-{i}": i for i in range(5000)}
    async with client(app) as c:
        response = await c.post(f"/deployment/{deployment_id}/run", json=body)
    assert response.status_code == 400, response.text[:300]
    answer = response.json()
    assert len(answer["errors"]) == 100
    assert answer["errors"][0] == {"parameter": "k" * 200, "message": "Unknown parameter"}
    assert answer["errors"][1] == {"parameter": "unknown-0", "message": "Unknown parameter"}
    assert answer["message"].endswith("; and 4901 more")
    assert len(response.content) < 20_000


async def test_subflow_schemas_cover_the_import_space(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    schemas = await get_subflow_schemas(runner)
    assert {"complex-flow", "double", "imported-flow", "add", "fail"} <= set(schemas)
    assert "not-imported" not in schemas
    assert schemas["complex-flow"]["definitions"]["Point"]["properties"]["x"]["type"] == "integer"


async def test_health_goes_503_when_the_poll_loop_stalls(sqlite_settings: Settings) -> None:
    runner = make_runner(sqlite_settings)
    await runner.add_flow(basic.add)
    app = await build_server(runner)
    released = asyncio.Event()
    async with client(app) as c:
        assert (await c.get("/health")).status_code == 503  # never polled yet
        async with running(runner):
            response = await c.get("/health")
            assert response.status_code == 200
            assert response.json() == {"message": "OK"}

            async def stalled(*_: object) -> None:
                await released.wait()

            runner._served.refresh = stalled  # type: ignore[method-assign]
            try:
                unhealthy = await eventually(
                    lambda: c.get("/health"), lambda r: r.status_code == 503, timeout=10
                )
                assert unhealthy.json() == {"message": "Runner is unresponsive at this time"}
            finally:
                released.set()


async def test_health_tolerance_is_polls_times_interval(sqlite_settings: Settings) -> None:
    runner = make_runner(sqlite_settings, query_seconds=10)
    app = await build_server(runner)
    async with client(app) as c:
        runner.last_polled = utcnow() - timedelta(seconds=19)
        assert (await c.get("/health")).status_code == 200
        runner.last_polled = utcnow() - timedelta(seconds=21)
        assert (await c.get("/health")).status_code == 503


async def test_run_count_and_shutdown(sqlite_settings: Settings, tmp_path: Path) -> None:
    runner, _ = await served(sqlite_settings)
    gated = await runner.add_flow(extra.touch_until, "gated")
    app = await build_server(runner)
    out, gate = tmp_path / "touched", tmp_path / "gate"
    task = asyncio.create_task(runner.start())
    async with client(app) as c:
        await eventually(lambda: c.get("/health"), lambda r: r.status_code == 200)
        assert (await c.get("/run_count")).json() == 0
        body = {"t0": 1, "out": str(out), "gate": str(gate)}
        await c.post(f"/deployment/{gated}/run", json=body)
        await eventually(lambda: c.get("/run_count"), lambda r: r.json() == 1)
        response = await c.post("/shutdown")
        assert response.status_code == 200
        assert response.json() == {"message": "OK"}
        gate.touch()  # the run ends only now, while the runner drains
    await asyncio.wait_for(task, timeout=30)  # drained: the running run finished first
    assert "end 1" in out.read_text()


async def test_openapi_documents_each_deployment_body(sqlite_settings: Settings) -> None:
    from openapi_spec_validator import validate

    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        document = (await c.get("/openapi.json")).json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    complex_body = paths[f"/deployment/{ids['complex']}/run"]["post"]["requestBody"]
    schema = complex_body["content"]["application/json"]["schema"]
    assert "definitions" not in schema
    assert schema["properties"]["shape"]["$ref"] == "#/components/schemas/Shape"
    components = document["components"]["schemas"]
    assert components["Shape"]["properties"]["points"]["items"]["$ref"] == (
        "#/components/schemas/Point"
    )
    add_schema = paths[f"/deployment/{ids['adder']}/run"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]
    expected = basic.add.parameters.model_dump()
    del expected["definitions"]
    assert add_schema["properties"] == expected["properties"]
    assert add_schema["required"] == expected["required"]
    assert add_schema["additionalProperties"] is False, "unknown parameters are refused"
    for ref in _refs(document):
        name = ref.removeprefix("#/components/schemas/")
        assert ref.startswith("#/components/schemas/") and name in components, ref
    assert "/flow/run" in paths
    assert paths["/flow/run"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "required"
    ] == ["entrypoint"]


async def test_openapi_documents_the_answers_of_the_run_routes(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        paths = (await c.get("/openapi.json")).json()["paths"]
    assert "404" in paths["/flow_runs/{flow_run_id}"]["get"]["responses"]
    assert {"404", "409"} <= set(paths["/flow_runs/{flow_run_id}/cancel"]["post"]["responses"])
    logs = paths["/flow_runs/{flow_run_id}/logs"]["get"]
    assert {"400", "404"} <= set(logs["responses"])
    assert "text/event-stream" in logs["responses"]["200"]["content"]
    (last_event_id,) = [p for p in logs["parameters"] if p["name"] == "Last-Event-ID"]
    assert last_event_id["schema"]["type"] == "string", "a header is never null"


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []

"""The runner webserver in-process (ASGI), over a real runner, store and child processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from headrace.client import new_run_for_deployment
from headrace.entrypoints import load_flow_from_entrypoint
from headrace.flow_runs import LogRecord
from headrace.runner import Runner
from headrace.runner.server import build_server, get_subflow_schemas
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from headrace.store.records import MAX_PAGE
from tests.flows import basic, extra, nested
from tests.helpers import eventually, make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(60)

FLOWS_DIR = Path(__file__).resolve().parent.parent / "flows"
UNMANAGED = f"{FLOWS_DIR / 'unmanaged.py'}:unmanaged_flow"


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """For behaviour that does not depend on the database."""
    return Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'web.db'}")


@contextlib.asynccontextmanager
async def client(app: FastAPI, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://runner", headers=headers
    ) as c:
        yield c


async def served(settings: Settings, **runner_options: Any) -> tuple[Runner, dict[str, UUID]]:
    """A runner serving ``add`` (defaults y=10), ``touch``, ``complex_flow`` and ``double``."""
    runner = make_runner(settings, **runner_options)
    ids = {
        "adder": await runner.add_flow(basic.add, "adder", parameters={"y": 10}),
        "toucher": await runner.add_flow(basic.touch, "toucher"),
        "complex": await runner.add_flow(nested.complex_flow, "complex"),
        "double": await runner.add_flow(nested.double, "double"),
    }
    return runner, ids


# -- the reference's behaviours ------------------------------------------------


async def test_one_run_route_per_deployment_and_no_others(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    routes = [r for r in app.routes if getattr(r, "path", "").startswith("/deployment")]
    assert {getattr(r, "path", "") for r in routes} == {
        f"/deployment/{i}/run" for i in ids.values()
    }
    assert {getattr(r, "name", "") for r in routes} == {f"Run {name}" for name in ids}
    async with client(app) as c:
        response = await c.post(f"/deployment/{uuid4()}/run", json={})
        assert response.status_code == 404
        assert response.json() == {"message": "Deployment not found"}


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


async def test_managed_flow_runs_with_its_parent(settings: Settings) -> None:
    runner, _ = await served(settings)
    app = await build_server(runner)
    parent = uuid4()
    async with running(runner), client(app) as c:
        response = await c.post(
            "/flow/run",
            json={
                "entrypoint": "tests.flows.nested:double",
                "parameters": {"x": 21},
                "parent_task_run_id": str(parent),
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["flow_name"] == "double"
        assert body["parent_task_run_id"] == str(parent)
        assert body["deployment_id"] is None
        assert body["state"]["type"] == "SCHEDULED"
        done = await wait_for_state(runner.store, UUID(body["id"]))
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 42
        assert done.parent_task_run_id == parent


async def test_managed_flows_by_file_path_and_through_imports(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        by_path = await c.post(
            "/flow/run",
            json={"entrypoint": f"{FLOWS_DIR / 'nested.py'}:double", "parameters": {"x": 1}},
        )
        imported = await c.post(
            "/flow/run", json={"entrypoint": "tests.flows.nested:imported_flow"}
        )
        sibling = await c.post(
            "/flow/run", json={"entrypoint": "tests.flows.imported:not_imported"}
        )
    assert by_path.status_code == 201, by_path.text
    assert by_path.json()["entrypoint"] == f"{FLOWS_DIR / 'nested.py'}:double"
    assert imported.status_code == 201, imported.text
    assert sibling.status_code == 403, "only flows the deployments' modules bind are managed"


@pytest.mark.parametrize(
    "entrypoint",
    [
        "tests/flows/nested.py:missing",
        "tests.flows.nested:missing",
        "/not/a/path.py:flow",
        "not/a/python/file.txt:flow",
        "not/a/python/file.txt",
        "tests.flows.basic:not_a_flow",
        "no_such_module_anywhere:flow",
        "/etc/passwd:root",
        "/dev/null/x.py:f",
    ],
)
async def test_missing_flows_are_404(sqlite_settings: Settings, entrypoint: str) -> None:
    runner, _ = await served(sqlite_settings)
    await runner.add_flow(basic.add, "basic-adder")
    app = await build_server(runner)
    async with client(app) as c:
        response = await c.post("/flow/run", json={"entrypoint": entrypoint})
    assert response.status_code == 404, response.text
    assert response.json() == {"message": "Flow not found"}


async def test_flow_run_validates_parameters(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        response = await c.post(
            "/flow/run",
            json={"entrypoint": "tests.flows.nested:complex_flow", "parameters": {"scale": "big"}},
        )
        assert response.status_code == 400
        assert sorted(e["parameter"] for e in response.json()["errors"]) == ["scale", "shape"]
        for body in ({"parameters": {}}, {"entrypoint": 3}, {"entrypoint": "a:b", "parameters": 1}):
            response = await c.post("/flow/run", json=body)
            assert response.status_code == 400, body


async def test_unmanaged_flow_is_refused_without_running_its_file(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    script = tmp_path / "stranger.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from headrace import flow
            Path({str(marker)!r}).write_text("executed")

            @flow
            def stranger() -> int:
                return 1
            """
        )
    )
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        for entrypoint in (f"{script}:stranger", UNMANAGED):
            response = await c.post("/flow/run", json={"entrypoint": entrypoint})
            assert response.status_code == 403, response.text
            assert "HEADRACE_RUNNER_SERVER_ALLOW_UNMANAGED_FLOWS" in response.json()["message"]
    assert not marker.exists()


async def test_a_served_script_named_as_a_module_is_the_same_flow(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``submit_to_runner(etl)`` after ``from flows import etl`` names ``flows:etl``."""
    module = f"served_{uuid4().hex}"
    script = tmp_path / f"{module}.py"
    script.write_text(
        textwrap.dedent(
            """
            from headrace import flow

            @flow
            def etl(n: int) -> int:
                return n * 2
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = make_runner(settings)
    await runner.add_flow(load_flow_from_entrypoint(f"{script}:etl"))
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        body = {"entrypoint": f"{module}:etl", "parameters": {"n": 4}}
        response = await c.post("/flow/run", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["entrypoint"] == f"{script.resolve()}:etl"  # the loaded file
        done = await wait_for_state(runner.store, UUID(response.json()["id"]))
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 8


async def test_unmanaged_flow_allowed_runs_with_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    allowing = settings.model_copy(update={"runner_server_allow_unmanaged_flows": True})
    runner, _ = await served(allowing)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        with caplog.at_level(logging.WARNING, logger="headrace.runner.server.triggers"):
            response = await c.post(
                "/flow/run", json={"entrypoint": UNMANAGED, "parameters": {"n": 1}}
            )
        assert response.status_code == 201, response.text
        assert "unmanaged flow" in caplog.text
        done = await wait_for_state(runner.store, UUID(response.json()["id"]))
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 101


async def test_changed_schema_runs_with_a_warning(
    sqlite_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "changing.py"
    script.write_text(
        "from headrace import flow\n\n@flow\ndef changing(a: int) -> int:\n    return a\n"
    )
    entrypoint = f"{script}:changing"
    from headrace.entrypoints import load_flow_from_entrypoint

    original = load_flow_from_entrypoint(entrypoint)
    runner = make_runner(sqlite_settings)
    await runner.add_flow(original, "changing", entrypoint=entrypoint)
    app = await build_server(runner)
    assert (await get_subflow_schemas(runner))["changing"]["required"] == ["a"]
    script.write_text(
        "from headrace import flow\n\n@flow\ndef changing(a: int, b: int = 0) -> int:\n"
        "    return a + b\n"
    )
    built = script.stat().st_mtime_ns
    os.utime(script, ns=(built + 10**9, built + 10**9))  # a coarse clock must not hide the edit
    async with client(app) as c:
        with caplog.at_level(logging.WARNING, logger="headrace.runner.server.triggers"):
            response = await c.post(
                "/flow/run", json={"entrypoint": entrypoint, "parameters": {"a": 1, "b": 2}}
            )
    assert response.status_code == 201, response.text
    assert (
        "A change in flow parameters has been detected. Please restart the runner." in caplog.text
    )


async def test_subflow_schemas_cover_the_import_space(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    schemas = await get_subflow_schemas(runner)
    assert {"complex-flow", "double", "imported-flow", "add", "fail"} <= set(schemas)
    assert "not-imported" not in schemas
    assert schemas["complex-flow"]["definitions"]["Point"]["properties"]["x"]["type"] == "integer"


# -- runner routes -------------------------------------------------------------


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
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    out = tmp_path / "touched"
    task = asyncio.create_task(runner.start())
    async with client(app) as c:
        await eventually(lambda: c.get("/health"), lambda r: r.status_code == 200)
        assert (await c.get("/run_count")).json() == 0
        body = {"t0": 1, "out": str(out), "sleep": 0.8}
        await c.post(f"/deployment/{ids['toucher']}/run", json=body)
        await eventually(lambda: c.get("/run_count"), lambda r: r.json() == 1)
        response = await c.post("/shutdown")
        assert response.status_code == 200
        assert response.json() == {"message": "OK"}
    await asyncio.wait_for(task, timeout=30)  # drained: the running run finished first
    assert "end 1" in out.read_text()


# -- backpressure, idempotency, waiting ---------------------------------------------


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


async def test_wait_returns_the_result_or_202(settings: Settings, tmp_path: Path) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        done = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 1})
        assert done.status_code == 200, done.text
        assert done.json()["state"]["type"] == "COMPLETED"
        assert done.json()["result"] == 11
        assert done.json()["flow_run_id"] == done.json()["id"]
        body = {"t0": 2, "out": str(tmp_path / "t"), "sleep": 1.0}
        started = time.monotonic()
        slow = await c.post(f"/deployment/{ids['toucher']}/run?wait=0.2", json=body)
        assert time.monotonic() - started < 5
        assert slow.status_code == 202, slow.text
        location = slow.headers["Location"]
        assert location == f"/flow_runs/{slow.json()['id']}"
        final = await eventually(
            lambda: c.get(location), lambda r: r.json()["state"]["type"] == "COMPLETED"
        )
        assert [s["type"] for s in final.json()["state_history"]][-1] == "COMPLETED"
        flow = await c.post(
            "/flow/run?wait=20",
            json={"entrypoint": "tests.flows.nested:double", "parameters": {"x": 4}},
        )
        assert flow.status_code == 200
        assert flow.json()["result"] == 8
        assert (await c.post(f"/deployment/{ids['adder']}/run?wait=0", json={})).status_code == 422
        too_long = await c.post(f"/deployment/{ids['adder']}/run?wait=301", json={})
        assert too_long.status_code == 422
        not_a_number = await c.post(f"/deployment/{ids['adder']}/run?wait=nan", json={})
        assert not_a_number.status_code == 422
        assert "finite number" in not_a_number.json()["detail"][0]["msg"]


# -- run routes ------------------------------------------------------------------


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
        new_run_for_deployment(await runner.store.read_deployment(ids["adder"]), {"x": 1})
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


async def test_logs_follow_as_server_sent_events(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        created = await c.post(f"/deployment/{ids['adder']}/run", json={"x": 5})
        run_id = created.json()["flow_run_id"]
        async with c.stream("GET", f"/flow_runs/{run_id}/logs", params={"follow": True}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            text = "".join([chunk async for chunk in stream.aiter_text()])
    events = [e for e in text.split("\n\n") if e.strip()]
    assert events[-1].startswith("event: end\n")
    assert '"COMPLETED"' in events[-1]
    data = [e for e in events[:-1] if "data: " in e]
    assert any('"message":"adding 5 and 10"' in e for e in data)
    assert all(e.startswith("id: ") for e in data)


# -- security ----------------------------------------------------------------------


async def test_api_key_guards_everything_but_health(sqlite_settings: Settings) -> None:
    keyed = sqlite_settings.model_copy(update={"api_key": "s3cret"})
    runner, ids = await served(keyed)
    runner.last_polled = utcnow()
    app = await build_server(runner)
    async with client(app) as c:
        assert (await c.get("/health")).status_code == 200
        probe = await c.head("/health")  # load balancers often probe with HEAD
        assert probe.status_code == 200 and probe.content == b""
        for method, path in [
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/run_count"),
            ("POST", "/shutdown"),
            ("POST", f"/deployment/{ids['double']}/run"),
            ("GET", "/flow_runs"),
            ("GET", "/no/such/route"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                response = await c.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["WWW-Authenticate"] == "Bearer"
    async with client(app, Authorization="Bearer s3cret") as c:
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/run_count")).status_code == 200
        ok = await c.post(f"/deployment/{ids['double']}/run", json={"x": 1})
        assert ok.status_code == 201
    async with client(app, Authorization="bearer s3cret") as c:
        assert (await c.get("/run_count")).status_code == 200


async def test_oversized_bodies_are_413(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    async with client(app) as c:
        path = f"/deployment/{ids['double']}/run"
        assert (await c.post(path, content=big)).status_code == 413
        assert (await c.post(path, content=chunks())).status_code == 413
        assert (await c.post("/flow/run", content=big)).status_code == 413

        async def small() -> AsyncIterator[bytes]:
            yield b'{"x": '
            yield b"3}"

        assert (await c.post(path, content=small())).status_code == 201
    assert len(await runner.store.read_flow_runs()) == 1


# -- OpenAPI -------------------------------------------------------------------------


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
    assert add_schema == expected
    for ref in _refs(document):
        name = ref.removeprefix("#/components/schemas/")
        assert ref.startswith("#/components/schemas/") and name in components, ref
    assert "/flow/run" in paths
    assert paths["/flow/run"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "required"
    ] == ["entrypoint"]


def _refs(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["$ref"]] if isinstance(value.get("$ref"), str) else []
        return found + [ref for item in value.values() for ref in _refs(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    return []

"""The webserver's trigger routes: status precedence, and runs that start without a poll."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from headrace.runner.server import build_server
from headrace.settings import Settings
from tests.flows import basic, nested
from tests.helpers import make_runner, running
from tests.integration.server_app import UNMANAGED
from tests.integration.server_app import client as asgi_client

pytestmark = pytest.mark.timeout(60)

SLOW_POLLS: dict[str, object] = {
    "query_seconds": 600.0,
    "dispatch_seconds": 600.0,
    "cancel_check_seconds": 600.0,
}
"""Fallback polls far apart, longer than the test's own timeout: a run that ends at all
started without one, however loaded the machine."""


async def test_flow_run_status_precedence_404_403_400_429(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'h.db'}",
        runner_backlog_limit=1,
    )
    runner = make_runner(settings)
    await runner.add_flow(nested.double, "double")
    app = await build_server(runner)
    bad = {"x": "not a number"}
    async with asgi_client(app) as client:
        queued = await client.post(
            "/flow/run", json={"entrypoint": "tests.flows.nested:double", "parameters": {"x": 1}}
        )
        assert queued.status_code == 201, "the backlog is now full"

        async def status(entrypoint: str, parameters: dict[str, Any]) -> int:
            body = {"entrypoint": entrypoint, "parameters": parameters}
            return (await client.post("/flow/run", json=body)).status_code

        assert await status("/no/such/file.py:double", bad) == 404
        assert await status("tests/flows/nested.py:no_such_flow", bad) == 404
        assert await status(UNMANAGED, {"n": "not a number"}) == 403
        # Outside the import space nothing runs, yet a plainly missing name is still 404.
        missing = UNMANAGED.replace(":unmanaged_flow", ":no_such_flow")
        assert await status(missing, bad) == 404
        assert await status("tests.flows.unmanaged:no_such_flow", bad) == 404
        assert await status("tests.flows.unmanaged:unmanaged_flow", bad) == 403
        assert await status("tests.flows.nested:double", bad) == 400
        assert await status("tests.flows.nested:double", {"x": 2}) == 429
    assert len(await runner.store.read_flow_runs()) == 1


async def test_deployment_route_status_precedence_400_then_429(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'h.db'}",
        runner_backlog_limit=1,
    )
    runner = make_runner(settings)
    deployment = await runner.add_flow(basic.add, "adder")
    app = await build_server(runner)
    path = f"/deployment/{deployment}/run"
    async with asgi_client(app) as client:
        assert (await client.post(path, json={"x": 1})).status_code == 201
        assert (await client.post(path, json={"x": "one"})).status_code == 400
        full = await client.post(path, json={"x": 1})
        assert full.status_code == 429 and full.headers["Retry-After"]


async def test_triggered_runs_start_without_waiting_for_a_poll(settings: Settings) -> None:
    runner = make_runner(settings, **SLOW_POLLS)
    deployment = await runner.add_flow(basic.add, "adder")
    await runner.add_flow(nested.double, "double")
    app = await build_server(runner)
    async with running(runner), asgi_client(app) as client:
        by_deployment = await client.post(f"/deployment/{deployment}/run?wait=30", json={"x": 1})
        by_entrypoint = await client.post(
            "/flow/run?wait=30",
            json={"entrypoint": "tests.flows.nested:double", "parameters": {"x": 4}},
        )
    assert by_deployment.status_code == 200, by_deployment.text
    assert by_deployment.json()["result"] == 2
    assert by_entrypoint.status_code == 200, by_entrypoint.text
    assert by_entrypoint.json()["result"] == 8


async def test_unknown_parameters_of_a_flow_without_parameters_are_400(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'h.db'}")
    runner = make_runner(settings)
    deployment = await runner.add_flow(basic.returns_object, "no-parameters")
    app = await build_server(runner)
    async with asgi_client(app) as client:
        refused = await client.post(f"/deployment/{deployment}/run", json={"bogus": 1})
        accepted = await client.post(f"/deployment/{deployment}/run")
    assert refused.status_code == 400, refused.text
    assert [e["parameter"] for e in refused.json()["errors"]] == ["bogus"]
    assert accepted.status_code == 201
    assert len(await runner.store.read_flow_runs()) == 1

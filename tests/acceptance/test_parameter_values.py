"""Typed parameter values reach a run alike from every entry point, and bad ones are refused alike.

A runner with its webserver on 127.0.0.1 serves ``tests.flows.typed``; runs are
started over HTTP, by ``submit_to_runner``, by the Python client and by the
``headrace`` command in a process of its own, against SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from headrace.client import get_client
from headrace.exceptions import ParameterValidationError
from headrace.parameters import NON_FINITE
from headrace.settings import Settings
from headrace.submission import submit_to_runner, wait_for_submitted_runs
from tests.acceptance.test_webserver_e2e import base_url, started, web_runner
from tests.flows import typed
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = "tests.flows.typed:typed"
IDENT = UUID("6f1c1d52-6a3e-4a43-9d7e-2f0f7f1e0c11")
VALUES: dict[str, Any] = {
    "window": typed.Window(start=date(2026, 1, 31), days=3),
    "day": date(2026, 2, 1),
    "colour": typed.Colour.BLUE,
    "ident": IDENT,
}
AS_JSON = {
    "window": {"start": "2026-01-31", "days": 3},
    "day": "2026-02-01",
    "colour": "blue",
    "ident": str(IDENT),
}
RECEIVED = {
    "window": "Window(datetime.date(2026, 1, 31), 3)",
    "day": "datetime.date(2026, 2, 1)",
    "colour": "<Colour.BLUE: 'blue'>",
    "ident": f"UUID('{IDENT}')",
    "delay": "0.0",
}
REFUSED = f"Invalid parameters: delay: {NON_FINITE}"


@pytest.fixture
def web(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"runner_server_host": "127.0.0.1", "runner_server_port": free_port()}
    )


def headrace(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The ``headrace`` command, as a user's shell runs it against this test's database."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEADRACE_")}
    env.update(
        PYTHONPATH=str(REPO),
        HEADRACE_HOME=str(settings.home),
        HEADRACE_DATABASE_URL=settings.resolved_database_url,
        COLUMNS="1000",
    )
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_typed_values_reach_the_run_from_every_entry_point(web: Settings) -> None:
    runner = web_runner(web)
    deployment_id = await runner.add_flow(typed.typed, "typed")
    cli_params = [f"--param={name}={json.dumps(value)}" for name, value in AS_JSON.items()]
    async with started(runner):
        submitted = await asyncio.to_thread(submit_to_runner, typed.typed, VALUES, settings=web)
        by_name = await asyncio.to_thread(submit_to_runner, ENTRYPOINT, VALUES, settings=web)
        async with get_client(web) as client:
            from_deployment = await client.create_flow_run_from_deployment(deployment_id, VALUES)
            ad_hoc = await client.create_flow_run(typed.typed, VALUES, runner_name=runner.name)
        cli = await asyncio.to_thread(headrace, web, "run", str(deployment_id), *cli_params)
        assert cli.returncode == 0, cli.stderr
        ids = [run.id for run in (submitted, by_name, from_deployment, ad_hoc)]
        ids.append(UUID(cli.stdout.splitlines()[0]))
        finished = await asyncio.to_thread(
            wait_for_submitted_runs, ids, 60, poll_seconds=0.05, settings=web
        )
    for run in finished:
        assert run.state.type == "COMPLETED", run.state.message
        assert run.parameters == AS_JSON
        assert run.result == RECEIVED


async def test_a_non_finite_number_is_refused_alike_by_every_entry_point(web: Settings) -> None:
    runner = web_runner(web)
    deployment_id = await runner.add_flow(typed.typed, "typed")
    body = json.dumps(AS_JSON)[:-1] + ', "delay": 1e999}'
    refusals: dict[str, str] = {}
    async with started(runner), httpx.AsyncClient(base_url=base_url(web)) as http:
        for route, content in [
            (f"/deployment/{deployment_id}/run", body),
            ("/flow/run", f'{{"entrypoint": "{ENTRYPOINT}", "parameters": {body}}}'),
            (f"/deployment/{deployment_id}/run", body.replace("1e999", "NaN")),
            (f"/deployment/{deployment_id}/run", body.replace("1e999", "-Infinity")),
        ]:
            answer = await http.post(route, content=content)
            assert answer.status_code == 400, answer.text
            assert answer.json()["errors"] == [{"parameter": "delay", "message": NON_FINITE}]
            refusals[f"POST {route} {content[-12:]}"] = answer.json()["message"]
        for bad in (float("inf"), float("nan")):
            values = {**VALUES, "delay": bad}
            for flow in (typed.typed, ENTRYPOINT):
                refusals[f"submit {flow} {bad}"] = await _refusal(
                    asyncio.to_thread(submit_to_runner, flow, values, settings=web)
                )
            async with get_client(web) as client:
                refusals[f"client deployment {bad}"] = await _refusal(
                    client.create_flow_run_from_deployment(deployment_id, values)
                )
                refusals[f"client flow {bad}"] = await _refusal(
                    client.create_flow_run(typed.typed, values)
                )
        for args in [
            ["run", str(deployment_id), "--param", "delay=1e999"],
            ["run", str(deployment_id), "--params", '{"delay": NaN}'],
            ["serve", "tests/flows/typed.py:typed", "--param", "delay=-1e999", "--no-webserver"],
        ]:
            cli = await asyncio.to_thread(headrace, web, *args)
            assert cli.returncode == 1, cli.stderr
            refusals[" ".join(args)] = cli.stderr.strip().removeprefix("Error: ")
        async with get_client(web) as client:
            assert await client.read_flow_runs() == [], "nothing refused was queued"
    assert refusals == dict.fromkeys(refusals, REFUSED)


async def _refusal(call: Any) -> str:
    with pytest.raises(ParameterValidationError) as info:
        await call
    assert info.value.errors == [{"parameter": "delay", "message": NON_FINITE}]
    return str(info.value)

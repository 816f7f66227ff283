"""Task runs and flow retries as users see them: triggered and read over HTTP, shown by the CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from typer.testing import CliRunner

from headrace import store as store_module
from headrace.cli import app as cli_app
from headrace.runner.server import build_server
from headrace.settings import Settings
from tests.flows import tasks
from tests.helpers import make_runner, running
from tests.integration.server_app import client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def env(settings: Settings) -> Iterator[dict[str, str | None]]:
    yield {
        "HEADRACE_HOME": str(settings.home),
        "HEADRACE_DATABASE_URL": settings.resolved_database_url,
        "COLUMNS": "200",
    }
    store = store_module._stores.pop(settings.resolved_database_url, None)
    if store is not None:
        store.close()


async def _trigger(settings: Settings, flow: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    """Trigger ``flow``'s deployment over HTTP, wait for the run, and read it and its task runs."""
    runner = make_runner(settings)
    deployment = await runner.add_flow(flow)
    server = await build_server(runner)
    async with running(runner), client(server) as c:
        created = await c.post(f"/deployment/{deployment}/run?wait=60", json=parameters)
        assert created.status_code in (200, 201), created.text
        run_id = created.json()["flow_run_id"]
        run = (await c.get(f"/flow_runs/{run_id}")).json()
        listed = await c.get(f"/flow_runs/{run_id}/task_runs")
        assert listed.status_code == 200
        assert (await c.get(f"/flow_runs/{uuid4()}/task_runs")).status_code == 404
        return {**run, "task_runs": listed.json()}


def test_task_runs_over_http_and_in_the_cli(
    settings: Settings, env: dict[str, str | None], tmp_path: Path
) -> None:
    run = asyncio.run(_trigger(settings, tasks.with_tasks, {"counter": str(tmp_path / "n")}))
    assert run["state"]["type"] == "COMPLETED", run["state"]
    task_runs = {t["name"]: t for t in run["task_runs"]}
    flaky = task_runs["flaky-0"]
    assert flaky["state"]["type"] == "COMPLETED" and flaky["run_count"] == 3
    assert flaky["start_time"] < flaky["end_time"]
    assert {"id", "name", "state", "run_count", "start_time", "end_time"} <= set(flaky)

    shown = CliRunner().invoke(cli_app, ["runs", "inspect", run["id"]], env=env)
    assert shown.exit_code == 0, shown.stderr
    assert "Task runs (6)" in shown.stdout
    flaky_row = next(line for line in shown.stdout.splitlines() if "flaky-0" in line)
    assert "COMPLETED" in flaky_row and " 3 " in flaky_row
    as_json = CliRunner().invoke(cli_app, ["runs", "inspect", run["id"], "--json"], env=env)
    names = sorted(t["name"] for t in json.loads(as_json.stdout)["task_runs"])
    assert names == sorted(task_runs)


def test_a_flow_retries_after_each_delay_of_its_list(settings: Settings) -> None:
    run = asyncio.run(_trigger(settings, tasks.always_fails, {}))
    assert run["state"]["type"] == "FAILED" and run["run_count"] == 4
    waits = [s for s in run["state_history"] if s["name"] == "AwaitingRetry"]
    assert [w["message"].split(" (at ")[0] for w in waits] == [
        "Attempt 1 of 4 failed, retrying in 0.2 s",
        "Attempt 2 of 4 failed, retrying in 0.4 s",
        "Attempt 3 of 4 failed, retrying in 0.4 s",  # the last delay is repeated
    ]
    assert "RuntimeError: attempt 4" in run["state"]["message"]


def test_a_retry_condition_that_says_no_fails_the_run_at_once(settings: Settings) -> None:
    run = asyncio.run(_trigger(settings, tasks.fails_for_good, {}))
    assert run["state"]["type"] == "FAILED" and run["run_count"] == 1
    assert "retry_condition_fn said not to retry" in run["state"]["message"]
    assert [s["type"] for s in run["state_history"]] == [
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "FAILED",
    ]

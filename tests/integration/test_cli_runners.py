"""The command line on runs nobody runs: serving runners, the LATE state, the run warning.

Through typer's runner, against real SQLite and PostgreSQL databases and real runners.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from datetime import timedelta

import pytest

from headrace.flow_runs import NewFlowRun
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.store import open_store
from tests.flows import basic
from tests.integration.test_cli import add_deployment, env, invoke, runner_in_thread

pytestmark = pytest.mark.timeout(120)

__all__ = ["env"]  # the fixture, shared with test_cli.py

NOBODY = "No runner serving add/adder is alive: the run waits until one starts"


def test_deployments_show_the_runners_serving_them(
    settings: Settings, env: dict[str, str | None]
) -> None:
    deployment_id = add_deployment(settings, basic.add, "adder")
    unserved = invoke(env, "deployments", "ls")
    assert unserved.exit_code == 0, unserved.output
    assert "Runners" in unserved.stdout and "none alive" in unserved.stdout
    inspected = invoke(env, "deployments", "inspect", "add/adder")
    assert "none alive: its runs wait until a runner serving it starts" in inspected.stdout

    with runner_in_thread(settings, (basic.add, "adder")) as runner:
        listed = invoke(env, "deployments", "ls")
        shown = invoke(env, "deployments", "inspect", "add/adder")
        detail = json.loads(invoke(env, "deployments", "inspect", "add/adder", "--json").stdout)
        # The same runner, judged by a reader whose heartbeat timeout has long passed.
        impatient = {**env, "HEADRACE_RUNNER_HEARTBEAT_TIMEOUT_SECONDS": "0.000001"}
        presumed_dead = invoke(impatient, "deployments", "inspect", "add/adder")

    assert "1 alive" in listed.stdout, listed.stdout
    assert shown.exit_code == 0, shown.output
    row = next(line for line in shown.stdout.splitlines() if runner.name in line)
    assert socket.gethostname() in row and str(os.getpid()) in row
    assert "s ago" in row and row.rstrip().endswith("alive")
    assert [(r["id"], r["pid"], r["alive"]) for r in detail["runners"]] == [
        (str(runner.record.id), os.getpid(), True)
    ]
    assert detail["id"] == str(deployment_id)
    assert "presumed dead" in presumed_dead.stdout and "none alive" in presumed_dead.stdout

    stopped = invoke(env, "deployments", "ls", "--json")
    assert json.loads(stopped.stdout)[0]["runners"] == []  # a stopped runner serves nothing


def test_run_warns_when_no_live_runner_serves_the_deployment(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    alone = invoke(env, "run", "add/adder", "-p", "x=1")
    assert alone.exit_code == 0, alone.output
    assert NOBODY in alone.stderr and "headrace serve " in alone.stderr
    assert NOBODY not in alone.stdout  # stdout keeps just the run's id, for scripts

    with runner_in_thread(settings, (basic.add, "adder")):
        served = invoke(env, "run", "add/adder", "-p", "x=1", "--watch", "--timeout", "60")
    assert served.exit_code == 0, served.output
    assert "No runner serving" not in served.stderr


def test_runs_ls_shows_overdue_runs_as_late(settings: Settings, env: dict[str, str | None]) -> None:
    deployment_id = add_deployment(settings, basic.add, "adder")

    async def queue() -> None:
        due = utcnow() - timedelta(minutes=5)
        new = NewFlowRun(flow_name="add", deployment_id=deployment_id, expected_start_time=due)
        await open_store(settings).create_flow_run(new)

    asyncio.run(queue())
    listed = invoke(env, "runs", "ls")
    assert listed.exit_code == 0, listed.output
    assert "LATE" in listed.stdout and "SCHEDULED" not in listed.stdout
    as_json = json.loads(invoke(env, "runs", "ls", "--json").stdout)
    assert [(r["state"]["type"], r["state"]["name"]) for r in as_json] == [("SCHEDULED", "Late")]

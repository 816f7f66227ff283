"""What ``ps`` shows: ``headrace run flow/deployment run-name`` and ``headrace forkserver``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(60)


def command_line(pid: int) -> str:
    """``/proc/<pid>/cmdline`` as ``ps`` prints it."""
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return raw.replace(b"\0", b" ").decode().strip()


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_a_run_and_the_fork_server_have_recognisable_titles(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.sleepy, "sleeper")
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"seconds": 30})
        started = await wait_for_state(client.store, run.id, [StateType.RUNNING])
        assert started.pid is not None
        assert command_line(started.pid) == f"headrace run sleepy/sleeper {run.name}"
        titles = [command_line(pid) for pid in children_of(os.getpid())]
        assert "headrace forkserver" in titles, titles
        await client.cancel_flow_run(run.id)
        await wait_for_state(client.store, run.id)

"""Several runners on one database: an ad-hoc run goes to the runner that accepted it.

Two serving runners run in processes of their own; the ``local`` one is started
from another directory and cannot load ``tests.flows.basic``, as a second
``headrace serve`` of another project could not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from headrace.client import get_client
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic, extra
from tests.helpers import eventually, free_port, make_runner, running, wait_for_state

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("serving_runner.py")
ADD = "tests.flows.basic:add"


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    name: str
    url: str


@contextlib.asynccontextmanager
async def serving_runner(
    settings: Settings, mode: str, cwd: Path = REPO, port: int = 0
) -> AsyncIterator[Served]:
    """``serving_runner.py`` in a process of its own until the block ends (or it is killed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.pop("PYTHONPATH", None)
    if mode == "basic":
        env["PYTHONPATH"] = str(REPO)
    command = [sys.executable, str(SCRIPT), settings.database_url, str(settings.home), mode]
    process = subprocess.Popen([*command, str(port)], cwd=cwd, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
        assert line.startswith(b"ready "), line
        served = Served(process, line.split()[1].decode(), f"http://127.0.0.1:{port}")
        if port:
            async with httpx.AsyncClient(base_url=served.url) as http:
                await eventually(lambda: _health(http), lambda status: status == 200)
        yield served
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.stdout.close()


async def _health(http: httpx.AsyncClient) -> int:
    try:
        return (await http.get("/health")).status_code
    except httpx.TransportError:
        return 0


async def post_ad_hoc(url: str, x: int) -> UUID:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post("/flow/run", json={"entrypoint": ADD, "parameters": {"x": x}})
    assert response.status_code == 201, response.text
    return UUID(response.json()["id"])


async def test_ad_hoc_runs_sent_to_one_runner_all_run_on_it(
    settings: Settings, tmp_path: Path
) -> None:
    async with (
        serving_runner(settings, "basic", port=free_port()) as a,
        serving_runner(settings, "local", cwd=tmp_path) as b,
    ):
        assert a.name != b.name  # unique by default
        ids = [await post_ad_hoc(a.url, x) for x in range(10)]
        async with get_client(settings) as client:
            done = [await wait_for_state(client.store, run_id, timeout=60) for run_id in ids]
    assert [(run.state.type, run.result) for run in done] == [
        (StateType.COMPLETED, x + 1) for x in range(10)
    ], [run.state.message for run in done]
    assert {run.runner_name for run in done} == {a.name}


async def test_create_and_execute_a_run_beside_a_serving_runner(settings: Settings) -> None:
    """The README's ``create_flow_run`` + ``execute_flow_run``, while ``headrace serve`` runs."""
    async with (
        serving_runner(settings, "basic", port=free_port()) as served,
        get_client(settings) as client,
    ):
        created = [await client.create_flow_run(basic.add, {"x": x}) for x in range(5)]
        # The serving runner claims oldest first: once this later run of its own has
        # ended, it has passed over every run above.
        adder = await client.read_deployment_by_name("add", "add")
        own = await client.create_flow_run_from_deployment(adder.id, {"x": 0})
        assert (await wait_for_state(client.store, own.id)).runner_name == served.name
        async with Runner(settings=settings, handle_signals=False) as runner:
            for x, run in enumerate(created):
                done = await runner.execute_flow_run(run.id)
                assert (done.state.type, done.result) == (StateType.COMPLETED, x + 1)
                assert done.runner_name == runner.name


@pytest.mark.parametrize("loadable", [True, False], ids=["moves", "crashes"])
async def test_a_run_sent_to_a_runner_that_was_killed_ends(
    settings: Settings, loadable: bool
) -> None:
    """Queued behind a busy slot when its runner dies: a runner serving its flow's module
    takes it over; with none, it ends CRASHED rather than wait for ever."""
    async with (
        serving_runner(settings, "basic", port=free_port()) as a,
        get_client(settings) as client,
    ):
        sleepy = await client.read_deployment_by_name("sleepy", "sleepy")
        busy = await client.create_flow_run_from_deployment(sleepy.id, {"seconds": 60})
        await wait_for_state(client.store, busy.id, {StateType.RUNNING}, timeout=30)
        queued = await post_ad_hoc(a.url, 1)
        a.process.send_signal(signal.SIGKILL)
        a.process.wait(30)
        assert (await client.read_flow_run(queued)).state.type == StateType.SCHEDULED
    survivor = make_runner(settings, name="survivor")
    await survivor.add_flow(basic.fail if loadable else extra.add_more)
    async with running(survivor), get_client(settings) as client:
        done = await wait_for_state(client.store, queued, timeout=30)
    if loadable:
        assert (done.state.type, done.result, done.runner_name) == (
            StateType.COMPLETED,
            2,
            "survivor",
        )
    else:
        assert done.state.type == StateType.CRASHED
        assert f"it was sent to runner {a.name!r}" in (done.state.message or "")
        assert "no live runner serves its flow" in (done.state.message or "")

"""Idle connections cannot starve runs of open files: past the bound they get 503, runs run.

``headrace serve`` is started with a low open-file limit; many idle clients
connect and never send a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headrace.client import get_client
from headrace.flow_runs import FlowRun
from headrace.settings import Settings
from headrace.states import TERMINAL_STATES
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30.0
LOW_FILE_LIMIT = 256
IDLE_CLIENTS = 300


def serve(
    settings: Settings, tmp_path: Path, limits: tuple[int, int]
) -> tuple[str, Path, subprocess.Popen[bytes]]:
    port, log = free_port(), tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(
        PYTHONPATH=str(REPO),
        HEADRACE_HOME=str(settings.home),
        HEADRACE_DATABASE_URL=settings.resolved_database_url,
        HEADRACE_RUNNER_POLL_FREQUENCY="0.2",
        HEADRACE_RUNNER_SERVER_KEEP_ALIVE_SECONDS="1",
    )
    command = [sys.executable, "-m", "headrace", "serve", "tests/flows/basic.py:add"]
    command += ["--name", "fds", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, limits),
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, log, process
        time.sleep(0.05)


@pytest.fixture
def stopped_at_end() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(DEADLINE_SECONDS)


def run_through_the_store(settings: Settings, url: str) -> FlowRun:
    """Trigger a run without the webserver (whose connections are taken) and wait for its end."""

    async def run() -> FlowRun:
        async with get_client(settings) as client:
            (deployment,) = await client.read_deployments()
            created = await client.create_flow_run_from_deployment(deployment.id, {"x": 1})
            deadline = time.monotonic() + DEADLINE_SECONDS
            while (
                current := await client.read_flow_run(created.id)
            ).state.type not in TERMINAL_STATES:
                assert time.monotonic() < deadline, current.state
                await asyncio.sleep(0.1)
            return current

    return asyncio.run(run())


def test_idle_connections_past_the_bound_get_503_and_runs_still_start(
    settings: Settings, tmp_path: Path, stopped_at_end: list[subprocess.Popen[bytes]]
) -> None:
    url, log, process = serve(settings, tmp_path, (LOW_FILE_LIMIT, LOW_FILE_LIMIT))
    stopped_at_end.append(process)
    port = int(url.rsplit(":", 1)[1])
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(IDLE_CLIENTS)]
    try:
        run = run_through_the_store(settings, url)
        assert run.state.type.value == "COMPLETED", (run.state, log.read_text())
        refused = 0
        for client in idle:
            with contextlib.suppress(OSError):
                refused += client.recv(64).startswith(b"HTTP/1.1 503")
        assert 0 < refused < IDLE_CLIENTS, "the bound refuses some, holds the rest"
    finally:
        for client in idle:
            client.close()
    # Idle ones were closed after the keep-alive timeout: the webserver answers again.
    assert httpx.get(f"{url}/health", timeout=5).status_code == 200
    assert "Too many open files" not in log.read_text()


def test_serving_raises_the_soft_open_file_limit_to_the_hard_one(
    settings: Settings, tmp_path: Path, stopped_at_end: list[subprocess.Popen[bytes]]
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= LOW_FILE_LIMIT:
        pytest.skip("the hard open-file limit is too low to raise anything")
    raised = LOW_FILE_LIMIT * 4 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    _, _, process = serve(settings, tmp_path, (LOW_FILE_LIMIT, raised))
    stopped_at_end.append(process)
    limits = Path(f"/proc/{process.pid}/limits").read_text()
    (line,) = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(raised), str(raised)], line

"""Stopping ``headrace serve`` the way people and service managers do: runs drain, none re-run.

Ctrl-C (SIGINT to the runner), systemd's ``KillMode=mixed`` (SIGTERM to the
runner, SIGKILL to what is left after ``TimeoutStopSec``), its
``KillMode=control-group`` and ``kill -TERM`` of the runner and its runs
(SIGTERM to every process), a SIGTERM delivered twice, and a grace period too
short for the runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from headrace.client import get_client
from headrace.flow_runs import FlowRun
from headrace.settings import Settings
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 30.0
STARTUP_SECONDS = 60.0
"""How long ``headrace serve`` may take to answer ``/health`` on a loaded 2-core host."""
OUTLIVING_SECONDS = 60.0
"""A first attempt that outlives any grace period here, however slowly the machine signals."""


class Served:
    """A ``headrace serve`` process, its URL and its console."""

    def __init__(self, settings: Settings, tmp_path: Path, entrypoint: str, grace: float) -> None:
        self.port, self.log = free_port(), tmp_path / f"serve-{time.monotonic_ns()}.log"
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
        env.update(
            PYTHONPATH=str(REPO),
            HEADRACE_HOME=str(settings.home),
            HEADRACE_DATABASE_URL=settings.resolved_database_url,
            HEADRACE_RUNNER_POLL_FREQUENCY="0.2",
            HEADRACE_RUNNER_SHUTDOWN_GRACE_SECONDS=str(grace),
        )
        command = [sys.executable, "-m", "headrace", "serve", entrypoint, "--name", "stop"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as sink:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.kill()  # not yet in the fixture's list: nothing else would end it
            raise

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._healthy():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def trigger_running(self, **parameters: object) -> UUID:
        """Trigger a run of the deployment and return once its body runs."""
        (deployment,) = httpx.get(f"{self.url}/deployments").json()
        response = httpx.post(f"{self.url}{deployment['run_url']}", json=parameters)
        assert response.status_code == 201, response.text
        run_id = response.json()["flow_run_id"]
        deadline = time.monotonic() + DEADLINE_SECONDS
        while httpx.get(f"{self.url}/flow_runs/{run_id}").json()["state"]["type"] != "RUNNING":
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)
        return UUID(run_id)

    def stopped(self, timeout: float = DEADLINE_SECONDS) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(DEADLINE_SECONDS)


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for each in started:
        each.kill()


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (its fork server, the runs, what they started)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def read_run(settings: Settings, run_id: UUID) -> FlowRun:
    async def read() -> FlowRun:
        async with get_client(settings) as client:
            return await client.read_flow_run(run_id)

    return asyncio.run(read())


def start_touching(settings: Settings, tmp_path: Path, served: list[Served]) -> tuple[Served, UUID]:
    """A runner whose run lasts until ``end_run`` opens its gate: it is still running when
    the test stops its runner, however loaded the machine."""
    runner = Served(settings, tmp_path, "tests/flows/extra.py:touch_until", grace=30)
    served.append(runner)
    out, gate = tmp_path / "markers", tmp_path / "gate"
    run_id = runner.trigger_running(t0=0, out=str(out), gate=str(gate))
    return runner, run_id


def end_run_once_draining(runner: Served, tmp_path: Path, signal_name: str) -> None:
    """Let the run end once the runner says it drains (so it drained a run in flight)."""
    heard = time.monotonic()
    while f"Received {signal_name}: draining" not in runner.log.read_text():
        assert time.monotonic() - heard < DEADLINE_SECONDS, runner.log.read_text()
        time.sleep(0.01)
    (tmp_path / "gate").touch()


def assert_drained(settings: Settings, runner: Served, run_id: UUID) -> None:
    assert runner.stopped() == 0, runner.log.read_text()
    run = read_run(settings, run_id)
    assert run.state.type.value == "COMPLETED", (run.state, runner.log.read_text())
    assert run.run_count == 1


def test_ctrl_c_drains(settings: Settings, tmp_path: Path, served: list[Served]) -> None:
    runner, run_id = start_touching(settings, tmp_path, served)
    runner.process.send_signal(signal.SIGINT)
    end_run_once_draining(runner, tmp_path, "SIGINT")
    assert_drained(settings, runner, run_id)


def test_systemd_kill_mode_mixed_drains(
    settings: Settings, tmp_path: Path, served: list[Served]
) -> None:
    """SIGTERM to the main process; SIGKILL to whatever is left once TimeoutStopSec is up."""
    runner, run_id = start_touching(settings, tmp_path, served)
    runner.process.send_signal(signal.SIGTERM)
    end_run_once_draining(runner, tmp_path, "SIGTERM")
    try:
        runner.stopped(timeout=DEADLINE_SECONDS)  # the unit's TimeoutStopSec is above the grace
    except subprocess.TimeoutExpired:
        runner.kill()
    assert_drained(settings, runner, run_id)


def test_a_sigterm_to_every_process_drains(
    settings: Settings, tmp_path: Path, served: list[Served]
) -> None:
    """systemd's KillMode=control-group, or ``kill -TERM`` of the runner and its runs."""
    runner, run_id = start_touching(settings, tmp_path, served)
    everyone = [runner.process.pid, *descendants(runner.process.pid)]
    assert len(everyone) >= 3, "the runner, its fork server and the run"
    for pid in everyone:
        os.kill(pid, signal.SIGTERM)
    end_run_once_draining(runner, tmp_path, "SIGTERM")
    assert_drained(settings, runner, run_id)
    assert "ignored a SIGTERM its runner did not send" in runner.log.read_text()


def test_a_sigterm_twice_within_a_second_is_one_stop(
    settings: Settings, tmp_path: Path, served: list[Served]
) -> None:
    runner, run_id = start_touching(settings, tmp_path, served)
    runner.process.send_signal(signal.SIGTERM)
    heard = time.monotonic()
    while "Received SIGTERM: draining" not in runner.log.read_text():  # heard: not coalesced
        assert time.monotonic() - heard < DEADLINE_SECONDS, runner.log.read_text()
        time.sleep(0.01)
    if time.monotonic() - heard > 0.5:
        pytest.skip("too slow to signal again within a second of the first")
    runner.process.send_signal(signal.SIGTERM)
    (tmp_path / "gate").touch()
    assert_drained(settings, runner, run_id)
    console = runner.log.read_text()
    assert "stopping the running runs now" not in console, "not a hurry"
    assert "Received SIGTERM again within 1s: the same stop" in console


@pytest.mark.parametrize(
    ("entrypoint", "expected", "retry"),
    [
        ("tests/flows/basic.py:touch", "CRASHED", {}),
        ("tests/flows/extra.py:touch_retried", "RETRIED", {"retry_sleep": 0}),
    ],
)
def test_a_run_outliving_the_grace_period_is_not_re_run_unless_it_has_retries(
    settings: Settings,
    tmp_path: Path,
    served: list[Served],
    entrypoint: str,
    expected: str,
    retry: dict[str, float],
) -> None:
    out = tmp_path / "markers"
    first = Served(settings, tmp_path, entrypoint, grace=0.5)
    served.append(first)
    run_id = first.trigger_running(t0=0, out=str(out), sleep=OUTLIVING_SECONDS, **retry)
    first.process.send_signal(signal.SIGTERM)
    assert first.stopped() == 0, first.log.read_text()
    second = Served(settings, tmp_path, entrypoint, grace=30)
    served.append(second)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (run := read_run(settings, run_id)).state.type.value not in ("CRASHED", "COMPLETED"):
        assert time.monotonic() < deadline, run.state
        time.sleep(0.1)
    if expected == "CRASHED":
        assert run.state.message == "Crashed: the runner shut down before it finished"
        time.sleep(1)  # the restarted runner has polled several times: nothing runs it again
        assert out.read_text().count("start") == 1
    else:
        assert (run.state.type.value, run.run_count) == ("COMPLETED", 2), run.state
        assert out.read_text().count("start") == 2

"""End to end in real processes: ``headrace serve`` in one, ``headrace run --watch`` in another.

The server is started with ``Popen`` on a free port of 127.0.0.1 and a fresh
``HEADRACE_HOME``, driven through the CLI and its advertised trigger URL, and
stopped with SIGTERM (a graceful drain that exits 0).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60
COMMAND_SECONDS = 60
SHUTDOWN_SECONDS = 15


class Lines:
    """A process's output read line by line on a thread, so every wait has a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
        except (ValueError, OSError):  # closed under us: the test is over
            pass
        self._queue.put(None)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def wait_for(self, accept: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError(f"output ended before {what}: {self.seen}")
            self.seen.append(line)
            if accept(line):
                return line
        raise AssertionError(f"no {what} within {timeout}s: {self.seen}")


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(
        HEADRACE_HOME=str(tmp_path / "home"),
        HEADRACE_RUNNER_POLL_FREQUENCY="0.2",
        PYTHONUNBUFFERED="1",
    )
    env.pop("COLUMNS", None)
    return env


def headrace(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "headrace", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
    )


@contextlib.contextmanager
def serving(
    cli_env: dict[str, str], tmp_path: Path, entrypoint: str, *options: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``headrace serve ENTRYPOINT`` on a free port until the block ends (or it is killed)."""
    port = free_port()
    command = [sys.executable, "-m", "headrace", "serve", entrypoint, *options]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with (
        (tmp_path / "serve.log").open("w") as log,
        subprocess.Popen(
            command, env=cli_env, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True
        ) as process,
    ):
        assert process.stdout is not None
        lines = Lines(process.stdout)
        try:
            banner = lines.wait_for(lambda s: s.startswith("Serving "), STARTUP_SECONDS, "banner")
            yield process, banner
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(SHUTDOWN_SECONDS)
            lines.join(SHUTDOWN_SECONDS)


@pytest.fixture
def served(cli_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``headrace serve tests/flows/basic.py:add`` until the test stops it (or it is killed)."""
    with serving(
        cli_env, tmp_path, "tests/flows/basic.py:add", "--name", "e2e", "--param", "y=1"
    ) as served:
        yield served


def test_serve_run_watch_logs_and_sigterm(
    served: tuple[subprocess.Popen[str], str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    process, banner = served
    match = re.search(r"Serving add/e2e \(([0-9a-f-]{36})\).*POST (http://\S+/run)", banner)
    assert match, banner
    deployment_id, trigger_url = match.groups()
    assert trigger_url.endswith(f"/deployment/{deployment_id}/run")
    assert trigger_url.startswith("http://127.0.0.1:")

    # `run --watch` in another process: state, logs, result, exit code 0.
    watched = headrace(cli_env, "run", "add/e2e", "--param", "x=1", "--watch")
    assert watched.returncode == 0, (watched.stdout, watched.stderr)
    out = watched.stdout.splitlines()
    run_id = out[0]
    assert "adding 1 and 1" in watched.stdout
    assert re.fullmatch(r"Flow run \S+ COMPLETED after \S+; result: 2", out[-1]), out[-1]

    logs = headrace(cli_env, "runs", "logs", run_id)
    assert logs.returncode == 0, logs.stderr
    assert "adding 1 and 1" in logs.stdout and "about to return" in logs.stdout

    # The advertised trigger URL works, and `runs logs --follow` waits for that run.
    response = httpx.post(trigger_url, json={"x": 5}, timeout=COMMAND_SECONDS)
    assert response.status_code == 201, response.text
    http_run = response.json()["flow_run_id"]
    followed = headrace(cli_env, "runs", "logs", http_run, "--follow")
    assert followed.returncode == 0, followed.stderr
    assert "adding 5 and 1" in followed.stdout

    listed = json.loads(headrace(cli_env, "runs", "ls", "--json").stdout)
    assert [run["id"] for run in listed] == [http_run, run_id]  # newest first
    assert {run["state"]["type"] for run in listed} == {"COMPLETED"}

    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(SHUTDOWN_SECONDS) == 0
    assert time.monotonic() - started < SHUTDOWN_SECONDS
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_ctrl_c_stops_watching_and_leaves_the_run_alone(
    served: tuple[subprocess.Popen[str], str], cli_env: dict[str, str]
) -> None:
    process, _ = served
    process.send_signal(signal.SIGTERM)  # nothing serves the deployment now: runs stay queued
    assert process.wait(SHUTDOWN_SECONDS) == 0

    with subprocess.Popen(
        [sys.executable, "-m", "headrace", "run", "add/e2e", "-p", "x=1", "--watch"],
        env=cli_env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as watcher:
        assert watcher.stdout is not None and watcher.stderr is not None
        lines = Lines(watcher.stdout)
        try:
            run_id = lines.wait_for(lambda s: bool(s.strip()), COMMAND_SECONDS, "the run id")
            lines.wait_for(lambda s: "SCHEDULED" in s, COMMAND_SECONDS, "the first state")
            watcher.send_signal(signal.SIGINT)
            assert watcher.wait(COMMAND_SECONDS) == 130
            assert "Ctrl-C" in watcher.stderr.read()
        finally:
            if watcher.poll() is None:
                watcher.kill()
            watcher.wait(SHUTDOWN_SECONDS)
            lines.join(SHUTDOWN_SECONDS)

    inspected = json.loads(headrace(cli_env, "runs", "inspect", run_id, "--json").stdout)
    assert inspected["state"]["type"] == "SCHEDULED"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to tell them apart")
@pytest.mark.parametrize("pin", [True, False, None])
def test_a_served_runner_keeps_to_one_cpu_and_its_runs_use_them_all(
    cli_env: dict[str, str], tmp_path: Path, pin: bool | None
) -> None:
    """Pinning is opt-in (``None``: the setting unset): every serve would take the same CPU."""
    if pin is not None:
        cli_env["HEADRACE_RUNNER_PIN_CPU"] = str(pin).lower()
    allowed = sorted(os.sched_getaffinity(0))
    with serving(cli_env, tmp_path, "tests/flows/basic.py:cpus") as (process, banner):
        trigger = re.search(r"POST (http://\S+/run)", banner)
        assert trigger, banner
        response = httpx.post(f"{trigger[1]}?wait=30", json={}, timeout=COMMAND_SECONDS)
        assert response.status_code == 200, response.text
        assert response.json()["result"] == allowed  # runs may use every CPU
        threads = Path(f"/proc/{process.pid}/task").iterdir()
        held = {
            line.split()[-1]
            for task in threads
            for line in (task / "status").read_text().splitlines()
            if line.startswith("Cpus_allowed_list:")
        }
        if pin:
            assert len(held) == 1 and held.pop().isdigit(), held  # every thread, one CPU
        else:
            assert not any(cpus.isdigit() for cpus in held), held


def test_a_served_runner_receives_large_results_and_log_records_whole(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Events far larger than a pipe write arrive whole on the served runner's loop (uvloop)."""
    size = 40_000
    entrypoint = "tests/flows/extra.py:big_log_and_result"
    env = {**cli_env, "HEADRACE_LOG_LINE_LIMIT_CHARS": str(2 * size)}  # no line is cut here
    with serving(env, tmp_path, entrypoint, "--param", f"size={size}") as (_, banner):
        trigger = re.search(r"POST (http://\S+)/deployment/\S+/run", banner)
        assert trigger, banner
        base, trigger_url = trigger[1], trigger[0].removeprefix("POST ")
        for _ in range(5):
            response = httpx.post(f"{trigger_url}?wait=30", json={}, timeout=COMMAND_SECONDS)
            assert response.status_code == 200, response.text
            run = response.json()
            assert run["state"]["type"] == "COMPLETED", run["state"]
            assert run["result"] == "x" * size
            logs = httpx.get(f"{base}/flow_runs/{run['id']}/logs", timeout=COMMAND_SECONDS)
            messages = [line["message"] for line in logs.json()]
            assert any(message.endswith(" - " + "y" * size) for message in messages), messages


def test_a_serve_that_cannot_listen_changes_nothing(
    served: tuple[subprocess.Popen[str], str], cli_env: dict[str, str]
) -> None:
    """The port is taken by a runner serving add/e2e: a second serve must not touch add/e2e."""
    _, banner = served
    port = re.search(r"127\.0\.0\.1:(\d+)/", banner)
    assert port, banner

    def deployments() -> list[dict[str, object]]:
        """As stored: the serving runners' heartbeats move on meanwhile."""
        listed = json.loads(headrace(cli_env, "deployments", "ls", "--json").stdout)
        return [{k: v for k, v in d.items() if k != "runners"} for d in listed]

    before = deployments()
    for name in ("e2e", "other"):
        failed = headrace(
            cli_env, "serve", "tests/flows/basic.py:add", "--name", name, "--paused",
            "--interval", "300", "--host", "127.0.0.1", "--port", port[1],
        )  # fmt: skip
        assert failed.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port[1]}: Address already in use" in failed.stderr
        assert "Traceback" not in failed.stderr
    assert deployments() == before


def test_serve_on_port_0_advertises_the_port_it_got(cli_env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "headrace", "serve", "tests/flows/basic.py:add"]
    command += ["--host", "127.0.0.1", "--port", "0"]
    with subprocess.Popen(
        command, env=cli_env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as process:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        try:
            banner = lines.wait_for(lambda s: s.startswith("Serving "), STARTUP_SECONDS, "banner")
            trigger = re.search(r"POST (http://127\.0\.0\.1:(\d+)/\S+)", banner)
            assert trigger and trigger[2] != "0", banner
            response = httpx.post(f"{trigger[1]}?wait=30", json={"x": 1}, timeout=COMMAND_SECONDS)
            assert response.status_code == 200, response.text
        finally:
            process.kill()
            process.wait(SHUTDOWN_SECONDS)
            lines.join(SHUTDOWN_SECONDS)


def test_a_second_signal_during_the_drain_requeues_at_once(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Ctrl-C twice: the runner stops now; its running run follows the crash rule, not stranded."""
    with serving(cli_env, tmp_path, "tests/flows/basic.py:sleepy", "--name", "nap") as (
        process,
        banner,
    ):
        trigger = re.search(r"POST (http://\S+/run)", banner)
        assert trigger, banner
        response = httpx.post(trigger[1], json={"seconds": 60}, timeout=COMMAND_SECONDS)
        run_id = response.json()["flow_run_id"]
        base = trigger[1].split("/deployment/")[0]
        deadline = time.monotonic() + COMMAND_SECONDS
        while httpx.get(f"{base}/flow_runs/{run_id}").json()["state"]["type"] != "RUNNING":
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        log = tmp_path / "serve.log"
        while "Waiting up to" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        assert process.wait(SHUTDOWN_SECONDS) == 0
    inspected = json.loads(headrace(cli_env, "runs", "inspect", run_id, "--json").stdout)
    assert inspected["state"]["type"] == "CRASHED", inspected["state"]  # no retries: not re-run
    assert "the runner shut down" in inspected["state"]["message"]
    assert "stopping the running runs now" in log.read_text()

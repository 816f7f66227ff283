"""``Flow.serve``, ``headrace.serve`` and ``headrace serve`` block, serve, and stop cleanly.

Each is started in a process of its own (they install signal handlers and block),
driven over HTTP or through the store, and stopped with SIGTERM or ``POST /shutdown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from headrace.settings import Settings
from tests.helpers import free_port
from tests.pages import table_rows

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0


def environment(settings: Settings, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEADRACE_")}
    env.update(
        PYTHONPATH=str(REPO),
        HEADRACE_HOME=str(settings.home),
        HEADRACE_DATABASE_URL=settings.resolved_database_url,
        HEADRACE_RUNNER_SERVER_HOST="127.0.0.1",
        HEADRACE_RUNNER_SERVER_PORT=str(port),
        HEADRACE_RUNNER_POLL_FREQUENCY="0.2",
    )
    return env


def start(args: list[str], settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            args,
            cwd=REPO,
            env=environment(settings, port),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started: whatever is still alive at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(STOP_SECONDS)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not healthy within {STARTUP_SECONDS}s:\n{log.read_text()}")


def test_flow_serve_with_its_webserver_stops_on_sigterm(
    settings: Settings, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    code = """
        from tests.flows import basic
        basic.add.serve("served", parameters={"y": 2}, tags=["t"], webserver=True, limit=2)
    """
    process = start(python(code), settings, port, log)
    processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process, log)

    (deployment,) = httpx.get(f"{url}/deployments").json()
    assert (deployment["flow_name"], deployment["name"]) == ("add", "served")
    assert deployment["parameters"] == {"y": 2} and deployment["tags"] == ["t"]
    done = httpx.post(f"{url}{deployment['run_url']}?wait=30", json={"x": 3}, timeout=40)
    assert done.status_code == 200, done.text
    assert done.json()["state"]["type"] == "COMPLETED" and done.json()["result"] == 5
    refused = httpx.post(f"{url}{deployment['run_url']}", json={"x": "three"})
    assert refused.status_code == 400, "the schema is enforced by default"

    process.send_signal(signal.SIGTERM)
    assert process.wait(STOP_SECONDS) == 0, log.read_text()
    console = log.read_text()
    assert "Traceback" not in console
    # The run's own output reaches the console, prefixed with the run's name.
    assert f"{done.json()['name']} | adding 3 and 2" in console


def test_headrace_serve_serves_several_deployments_until_shutdown(
    settings: Settings, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    code = """
        import headrace
        from tests.flows import basic, nested
        headrace.serve(
            basic.add.to_deployment("adder", parameters={"y": 10}),
            nested.double.to_deployment("doubler"),
            webserver=True,
        )
    """
    process = start(python(code), settings, port, log)
    processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process, log)

    deployments = {d["name"]: d for d in httpx.get(f"{url}/deployments").json()}
    assert set(deployments) == {"adder", "doubler"}
    doubled = httpx.post(
        f"{url}{deployments['doubler']['run_url']}?wait=30", json={"x": 21}, timeout=40
    )
    assert doubled.json()["result"] == 42, doubled.text
    managed = httpx.post(
        f"{url}/flow/run?wait=30",
        json={"entrypoint": "tests.flows.nested:double", "parameters": {"x": 2}},
        timeout=40,
    )
    assert managed.status_code == 200 and managed.json()["result"] == 4, managed.text

    assert httpx.post(f"{url}/shutdown").json() == {"message": "OK"}
    assert process.wait(STOP_SECONDS) == 0, log.read_text()
    console = log.read_text()
    for name in ("adder", "doubler"):  # the banner: each deployment's id and trigger URL
        run_url = deployments[name]["run_url"]
        assert f"({deployments[name]['id']}) · trigger: POST {url}{run_url}" in console, console
    assert re.search(rf"Run '{doubled.json()['name']}' of double/doubler completed in ", console)


def test_cli_serve_stores_every_deployment_option(
    settings: Settings, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    command = [sys.executable, "-m", "headrace", "serve", "tests/flows/basic.py:add"]
    command += ["--name", "nightly", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin"]
    command += ["--params", '{"x": 1, "y": 2}', "--param", "y=5", "--tag", "etl"]
    command += ["--concurrency-limit", "2", "--on-shutdown", "requeue", "--paused"]
    command += ["--limit", "3"]
    process = start(command, settings, port, log)
    processes.append(process)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, process, log)

    inspected = subprocess.run(
        [sys.executable, "-m", "headrace", "deployments", "inspect", "add/nightly", "--json"],
        cwd=REPO,
        env=environment(settings, port),
        capture_output=True,
        text=True,
        timeout=STOP_SECONDS,
    )
    assert inspected.returncode == 0, inspected.stderr
    deployment = json.loads(inspected.stdout)
    assert deployment["parameters"] == {"x": 1, "y": 5}
    assert deployment["tags"] == ["etl"]
    assert deployment["concurrency_limit"] == 2
    assert deployment["on_shutdown"] == "requeue"
    assert deployment["paused"] is True
    assert deployment["enforce_parameter_schema"] is True
    assert deployment["entrypoint"] == f"{REPO / 'tests' / 'flows' / 'basic.py'}:add"
    (schedule,) = deployment["schedules"]
    assert schedule["schedule"]["cron"] == "30 2 * * *"
    assert schedule["schedule"]["timezone"] == "Europe/Berlin"

    process.send_signal(signal.SIGINT)  # Ctrl-C drains and stops, as SIGTERM does
    assert process.wait(STOP_SECONDS) == 0, log.read_text()


def test_console_script_module_entry_and_typing_marker() -> None:
    from importlib import resources

    from headrace import __version__

    script = Path(sys.executable).with_name("headrace")
    for command in ([str(script), "version"], [sys.executable, "-m", "headrace", "--version"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=STOP_SECONDS)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"headrace {__version__}"
    assert resources.files("headrace").joinpath("py.typed").is_file()


async def test_the_banner_appears_once_the_trigger_url_answers(
    database_url: str, tmp_path: Path
) -> None:
    from headrace.runner.serving import serve_until_stopped
    from tests.flows import basic
    from tests.helpers import make_runner

    port = free_port()
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        runner_server_host="127.0.0.1",
        runner_server_port=port,
    )
    runner = make_runner(settings, webserver=True)
    await runner.add_flow(basic.add)
    seen: list[str] = []

    def on_ready() -> None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            seen.append("answered")
        except OSError as exc:
            seen.append(repr(exc))
        asyncio.get_running_loop().create_task(runner.stop())

    await asyncio.wait_for(serve_until_stopped(runner, on_ready), STARTUP_SECONDS)
    assert seen == ["answered"]


def test_each_dashboard_over_one_database_shows_every_runners_limit(
    settings: Settings, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Two ``headrace serve`` processes and a ``headrace ui`` on one database (a SQLite
    file, or PostgreSQL): each page lists both runners with their own limits."""
    serve = [sys.executable, "-m", "headrace", "serve", "tests/flows/basic.py:add"]
    urls = []
    for limit in (2, 3):
        port, log = free_port(), tmp_path / f"serve-{limit}.log"
        process = start(
            [*serve, "--name", f"add-{limit}", "--limit", str(limit)], settings, port, log
        )
        processes.append(process)
        urls.append(f"http://127.0.0.1:{port}")
        wait_until_healthy(urls[-1], process, log)
    port, log = free_port(), tmp_path / "ui.log"
    ui = start([sys.executable, "-m", "headrace", "ui"], settings, port, log)
    processes.append(ui)
    urls.append(f"http://127.0.0.1:{port}")
    pids = {str(p.pid): limit for p, limit in zip(processes, ("0 / 2", "0 / 3"), strict=False)}
    for url in urls:
        html = wait_for_page(f"{url}/ui/runners", ui, log)
        shown = {row[3]: row[5] for row in table_rows(html)}  # PID: running / limit
        assert shown == pids, html
    for process in processes:
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_SECONDS) == 0


def wait_for_page(url: str, process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with contextlib.suppress(httpx.TransportError):
            page = httpx.get(url, timeout=2)
            if page.status_code == 200:
                return page.text
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer within {STARTUP_SECONDS}s:\n{log.read_text()}")

"""A real ``headrace serve`` process (with an API key) and a real chromium for the dashboard.

One server and one browser for the whole tier; each test opens its own page in a
context that has logged in once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("HEADRACE_SCREENSHOTS", REPO / "build" / "screenshots"))
"""Where the tests save each page; ``HEADRACE_SCREENSHOTS=docs/screenshots`` refreshes the
README's pictures."""
KEY = "browser-test-key"
FLOW = "tests/browser/flows.py:report"

playwright_sync = pytest.importorskip("playwright.sync_api")


@dataclass
class Server:
    url: str
    deployment_id: str

    def trigger(self, **parameters: Any) -> str:
        """A run of the served deployment, created over the HTTP API; its id."""
        answer = httpx.post(
            f"{self.url}/deployment/{self.deployment_id}/run",
            json=parameters,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        answer.raise_for_status()
        return str(answer.json()["flow_run_id"])

    def state(self, run_id: str) -> str:
        answer = httpx.get(
            f"{self.url}/flow_runs/{run_id}", headers={"Authorization": f"Bearer {KEY}"}
        )
        return str(answer.json()["state"]["type"])


@dataclass
class Started:
    """``headrace serve`` started, maybe not listening yet."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path


@pytest.fixture(scope="module")
def serve_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """Started first, so it loads while chromium starts."""
    home = tmp_path_factory.mktemp("browser")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(
        HEADRACE_HOME=str(home / "home"),
        HEADRACE_DATABASE_URL=f"sqlite:///{home / 'ui.db'}",
        HEADRACE_API_KEY=KEY,
        HEADRACE_RUNNER_POLL_FREQUENCY="0.5",
        PYTHONUNBUFFERED="1",
    )
    command = [
        sys.executable, "-m", "headrace", "serve", FLOW, "--name", "daily",
        "--cron", "0 2 * * *", "--timezone", "Europe/Berlin",
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    log_path = home / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=log)
        try:
            yield Started(process, f"http://127.0.0.1:{port}", log_path)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def server(serve_process: Started, browser: Any) -> Server:
    started = serve_process
    return Server(started.url, _wait_until_up(started.url, started.process, started.log))


def _wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path) -> str:
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {KEY}"}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"headrace serve exited: {log.read_text()}")
        try:
            answer = httpx.get(f"{url}/deployments", headers=headers, timeout=2)
            if answer.status_code == 200 and answer.json():
                return str(answer.json()[0]["id"])
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"headrace serve did not start: {log.read_text()}")


@pytest.fixture(scope="module")
def browser(serve_process: Started) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def logged_in(browser: Any, server: Server) -> Iterator[Any]:
    """A browser context that has given the API key once, as a person would."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{server.url}/ui/")
    page.fill("#key", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/ui/")
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(logged_in: Any) -> Iterator[Any]:
    opened = logged_in.new_page()
    opened.set_default_timeout(15_000)
    dialogs: list[str] = []
    opened.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield opened
    opened.close()
    assert not dialogs, f"a page opened a dialog: {dialogs}"


def shoot(page: Any, name: str) -> None:
    """Save the page as ``<SCREENSHOTS>/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)

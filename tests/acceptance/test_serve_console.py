"""The console of ``headrace serve``: a banner, then a line as each run starts and ends."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from headrace.runner.outcomes import explain_exit
from tests.acceptance.test_cli_e2e import REPO, SHUTDOWN_SECONDS, STARTUP_SECONDS, Lines, cli_env
from tests.helpers import free_port

__all__ = ["cli_env"]  # the fixture

pytestmark = pytest.mark.timeout(120)

LINE_SECONDS = 30

MOODS = """
    import os
    import time

    from headrace import flow


    @flow
    def moody(mood: str = "ok", seconds: float = 0) -> str:
        if mood == "fail":
            raise ValueError("the line before\\nthe last line of the error")
        if mood == "crash":
            os._exit(3)
        time.sleep(seconds)
        return mood
"""


def test_serve_says_what_happens_to_each_run(cli_env: dict[str, str], tmp_path: Path) -> None:
    flows = tmp_path / "moods.py"
    flows.write_text(textwrap.dedent(MOODS))
    port = free_port()
    command = [sys.executable, "-m", "headrace", "serve", f"{flows}:moody", "--name", "console"]
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
            match = re.search(r"\(([0-9a-f-]{36})\).*POST (http://\S+/run)", banner)
            assert match, banner
            trigger = match.group(2)
            assert trigger == f"http://127.0.0.1:{port}/deployment/{match.group(1)}/run"

            def run(mood: str, seconds: float = 0) -> tuple[str, str]:
                response = httpx.post(trigger, json={"mood": mood, "seconds": seconds})
                assert response.status_code == 201, response.text
                run_id = response.json()["flow_run_id"]
                name = httpx.get(f"http://127.0.0.1:{port}/flow_runs/{run_id}").json()["name"]
                return run_id, f"Run {name!r} of moody/console"

            def line(text: str, what: str) -> str:
                return lines.wait_for(lambda s: s.startswith(text), LINE_SECONDS, what)

            run_id, label = run("ok")
            assert line(f"{label} started", "a start").endswith(f"({run_id})")
            assert re.fullmatch(r".* completed in \d+\.\d\ds", line(label, "an end"))

            _, label = run("fail")
            failed = line(f"{label} failed", "a failure")
            assert failed.endswith(": the last line of the error"), failed

            _, label = run("crash")
            crashed = line(f"{label} crashed", "a crash")
            assert crashed.endswith(explain_exit(3)), crashed

            run_id, label = run("sleep", 60)
            line(f"{label} started", "the sleeper's start")
            cancel = httpx.post(f"http://127.0.0.1:{port}/flow_runs/{run_id}/cancel")
            assert cancel.status_code < 300, cancel.text
            line(f"{label} was cancelled", "a cancel")

            process.send_signal(signal.SIGTERM)
            assert process.wait(SHUTDOWN_SECONDS) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(SHUTDOWN_SECONDS)
            lines.join(SHUTDOWN_SECONDS)

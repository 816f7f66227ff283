"""``headrace serve`` with ``HEADRACE_LOG_FORMAT=json``: every line it writes is a JSON object."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_cli_e2e import REPO, SHUTDOWN_SECONDS, STARTUP_SECONDS, Lines, cli_env
from tests.helpers import free_port

__all__ = ["cli_env"]  # the fixture

pytestmark = pytest.mark.timeout(120)

SAYS = """
    from headrace import flow


    @flow
    def says(words: str = "hello") -> str:
        print(f"the run says {words}")
        return words
"""


def test_every_line_is_json_and_a_runs_lines_carry_its_fields(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    flows = tmp_path / "says.py"
    flows.write_text(textwrap.dedent(SAYS))
    port = free_port()
    env = {**cli_env, "HEADRACE_LOG_FORMAT": "json", "HEADRACE_RUNNER_SERVER_ACCESS_LOG": "true"}
    command = [sys.executable, "-m", "headrace", "serve", f"{flows}:says", "--name", "loud"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        lines = Lines(process.stderr)
        try:
            banner = lines.wait_for(lambda s: "Serving says/loud" in s, STARTUP_SECONDS, "banner")
            trigger = json.loads(banner)["message"].split("POST ")[1].split(" ")[0]
            answer = httpx.post(trigger, json={"words": "hi"}, timeout=10)
            run_id = answer.json()["flow_run_id"]
            lines.wait_for(lambda s: "completed" in s, STARTUP_SECONDS, "the run's end")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=SHUTDOWN_SECONDS)
        lines.join(SHUTDOWN_SECONDS)
        stdout = process.stdout.read()
    entries = [json.loads(line) for line in lines.seen]  # each line parses
    assert stdout == ""
    said = next(entry for entry in entries if entry["message"] == "the run says hi")
    assert (said["flow_run_id"], said["deployment"], said["attempt"]) == (run_id, "says/loud", 1)
    access = next(entry for entry in entries if entry["logger"] == "headrace.access")
    assert (access["method"], access["status"]) == ("POST", 201)
    ended = next(entry for entry in entries if entry.get("state") == "COMPLETED")
    assert ended["flow_run_id"] == run_id and ended["logger"] == "headrace.console"

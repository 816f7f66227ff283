"""``headrace serve`` with a project file, and with several flows: one runner serves them all."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.test_cli_e2e import (
    REPO,
    SHUTDOWN_SECONDS,
    STARTUP_SECONDS,
    Lines,
    cli_env,
    headrace,
)
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)
__all__ = ["cli_env"]

PROJECT = """\
[runner]
host = "127.0.0.1"
port = {port}
limit = 2

[[deployments]]
name = "adder"
entrypoint = "flows/basic.py:add"
parameters = {{ y = 10 }}
tags = ["math"]
retries = 2

[[deployments]]
name = "nightly"
entrypoint = "{repo}/examples/hello.py:hello"
cron = "0 2 * * *"
timezone = "Europe/Berlin"
concurrency_limit = 1
on_shutdown = "requeue"
paused = true
"""


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path, *args: str, banners: int) -> Iterator[list[str]]:
    """``headrace serve ARGS`` from ``cwd`` until the block ends; yields its banner lines."""
    command = [sys.executable, "-m", "headrace", "serve", *args]
    with subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        try:
            yield [
                lines.wait_for(lambda s: s.startswith("Serving "), STARTUP_SECONDS, "a banner")
                for _ in range(banners)
            ]
            process.send_signal(signal.SIGTERM)
            assert process.wait(SHUTDOWN_SECONDS) == 0
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(SHUTDOWN_SECONDS)
            lines.join(SHUTDOWN_SECONDS)


def test_serve_with_no_arguments_serves_the_project_file(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "flows").mkdir(parents=True)
    (project / "flows" / "basic.py").write_text((REPO / "tests/flows/basic.py").read_text())
    port = free_port()
    (project / "headrace.toml").write_text(PROJECT.format(port=port, repo=REPO))

    with serving(cli_env, project, banners=2) as banners:
        assert banners[0].startswith("Serving add/adder (")
        assert f"POST http://127.0.0.1:{port}/deployment/" in banners[0]
        assert "Ctrl-C" not in banners[0] and banners[1].endswith("Ctrl-C to stop")
        assert "cron '0 2 * * *' (Europe/Berlin)" in banners[1]
        listed = json.loads(headrace(cli_env, "deployments", "ls", "--json").stdout)
        by_name = {d["name"]: d for d in listed}
        adder, nightly = by_name["adder"], by_name["nightly"]
        assert adder["entrypoint"] == f"{project}/flows/basic.py:add"
        assert (adder["parameters"], adder["tags"], adder["retries"]) == ({"y": 10}, ["math"], 2)
        assert (nightly["paused"], nightly["concurrency_limit"]) == (True, 1)
        assert nightly["on_shutdown"] == "requeue"
        run = headrace(cli_env, "run", "adder", "-p", "x=1", "--watch")
        assert run.returncode == 0, run.stderr
        assert run.stdout.splitlines()[-1].endswith("result: 11")


def test_several_flows_from_the_command_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    port = str(free_port())
    args = ["tests/flows/basic.py:add", "examples/hello.py:hello", "--tag", "both"]
    with serving(cli_env, REPO, *args, "--host", "127.0.0.1", "--port", port, banners=2):
        listed = json.loads(headrace(cli_env, "deployments", "ls", "--json").stdout)
        assert sorted((d["flow_name"], d["name"], d["tags"][0]) for d in listed) == [
            ("add", "add", "both"),
            ("hello", "hello", "both"),
        ]


def test_project_file_errors_name_the_deployment_and_exit_2(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.headrace]\n[[tool.headrace.deployments]]\nname = "nightly"\n'
        'entrypoint = "etl.py:etl"\ncron = "* * *"\n'
    )
    failed = subprocess.run(
        [sys.executable, "-m", "headrace", "serve"],
        env=cli_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 2
    assert failed.stderr.startswith(
        "Error: pyproject.toml: deployment \"nightly\": cron: invalid cron expression '* * *'"
    )
    assert "Traceback" not in failed.stderr

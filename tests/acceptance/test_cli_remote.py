"""Remote mode: with ``HEADRACE_API_URL`` the CLI goes through a real ``headrace serve``'s HTTP
API, and prints what it prints when it reads the database itself (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from headrace import store as store_module
from headrace.cli import app
from headrace.client import get_client
from headrace.remote import RemoteClient
from headrace.settings import Settings
from tests.acceptance.test_cli_e2e import REPO, SHUTDOWN_SECONDS, STARTUP_SECONDS, Lines
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(120)

KEY = "s3cret"
AGO = re.compile(r"\d+s ago")


@pytest.fixture
def env(database_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The database's environment, as the runner and a local CLI have it."""
    yield {
        "HEADRACE_HOME": str(tmp_path / "home"),
        "HEADRACE_DATABASE_URL": database_url,
        "HEADRACE_RUNNER_POLL_FREQUENCY": "0.2",
        "HEADRACE_API_KEY": KEY,
        "COLUMNS": "200",
    }
    store = store_module._stores.pop(database_url, None)
    if store is not None:
        store.close()


def headrace(env: dict[str, str | None], *args: str) -> Result:
    """The command, in this process (the runner it talks to has a process of its own)."""
    return CliRunner().invoke(app, list(args), env=env)


@pytest.fixture
def api_url(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """``headrace serve`` with an API key on a free port of 127.0.0.1; its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "headrace", "serve", "tests/flows/basic.py:add"]
    command += ["--name", "remote", "--host", "127.0.0.1", "--port", str(port)]
    with subprocess.Popen(
        command,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        try:
            lines.wait_for(lambda s: s.startswith("Serving "), STARTUP_SECONDS, "the banner")
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(SHUTDOWN_SECONDS)
            lines.join(SHUTDOWN_SECONDS)


def remote(env: dict[str, str], url: str, **more: str) -> dict[str, str | None]:
    """A machine without the database: only the API's URL and key."""
    return {
        **env,
        "HEADRACE_DATABASE_URL": None,
        "HEADRACE_HOME": "/nonexistent",
        "HEADRACE_API_URL": url,
        **more,
    }


async def ids_through_get_client(url: str) -> list[str]:
    async with get_client(Settings(api_url=url, api_key=KEY)) as client:
        assert isinstance(client, RemoteClient)
        runs = await client.read_flow_runs()
        assert await client.read_task_runs(runs[-1].id) == []  # `add` calls no task
        assert await client.read_notification_deliveries(runs[-1].id) == []
        return [str(run.id) for run in runs]


def test_remote_commands_print_what_local_ones_do(env: dict[str, str], api_url: str) -> None:
    far = remote(env, api_url)
    watched = headrace(far, "run", "remote", "-p", "x=2", "--watch")
    assert watched.exit_code == 0, watched.stderr
    assert watched.stdout.splitlines()[-1].endswith("result: 3")
    run_id = watched.stdout.splitlines()[0]
    later = headrace(far, "run", "add/remote", "-p", "x=1", "--in", "1h", "--name", "later")
    assert later.exit_code == 0, later.stderr

    for args in [
        ["deployments", "ls"],
        ["deployments", "inspect", "add/remote"],
        ["runs", "ls"],
        ["runs", "ls", "--json", "--state", "completed", "--since", "1h"],
        ["runs", "inspect", run_id],
        ["runs", "logs", run_id],
    ]:
        here, there = headrace(env, *args), headrace(far, *args)
        assert (here.exit_code, there.exit_code) == (0, 0), (args, there.stderr)
        if "--json" in args:
            assert json.loads(there.stdout) == json.loads(here.stdout), args
        else:
            assert AGO.sub("", there.stdout) == AGO.sub("", here.stdout), args
    local_ids = [run["id"] for run in json.loads(headrace(env, "runs", "ls", "--json").stdout)]
    assert asyncio.run(ids_through_get_client(api_url)) == local_ids
    listed = headrace(far, "runs", "ls").stdout.splitlines()
    assert listed[-1] == "2 runs: 1 scheduled, 1 completed"
    assert any(" later " in line for line in listed)

    cancelled = headrace(far, "runs", "cancel", later.stdout.strip())
    assert cancelled.stdout.startswith("Cancelled flow run 'later' before it started.")

    upkeep_prints_what_it_prints_locally(env, far, run_id, later.stdout.strip())

    # Errors: one line each (one runner serves the whole test: starting one takes seconds).

    rejected = headrace(remote(env, api_url, HEADRACE_API_KEY="wrong"), "runs", "ls")
    assert rejected.exit_code == 1
    assert rejected.stderr.strip() == (
        f"Error: API key rejected by {api_url}: set HEADRACE_API_KEY to its key"
    )
    missing = headrace(far, "runs", "inspect", "00000000-0000-0000-0000-000000000000")
    assert (
        missing.stderr.strip() == "Error: No flow run with id 00000000-0000-0000-0000-000000000000"
    )

    nowhere = f"http://127.0.0.1:{free_port()}"
    refused = headrace(remote(env, nowhere), "deployments", "ls")
    assert refused.exit_code == 1
    assert refused.stderr.strip().startswith(
        f"Error: Cannot reach the headrace API at {nowhere} (connection refused)"
    )
    assert "Traceback" not in rejected.stderr + refused.stderr


def upkeep_prints_what_it_prints_locally(
    env: dict[str, str], far: dict[str, str | None], ended_id: str, cancelled_id: str
) -> None:
    """Pause, resume, retry and delete through the API: the same output, the same refusals."""
    for verb in ("pause", "resume"):
        here, there = (headrace(e, "deployments", verb, "add/remote") for e in (env, far))
        assert (there.exit_code, there.stdout) == (here.exit_code, here.stdout), there.stderr
        assert there.stdout.strip() == f"{verb.capitalize()}d add/remote."
    paused = headrace(far, "deployments", "pause", "add/remote")
    assert paused.exit_code == 0, paused.stderr
    assert json.loads(headrace(env, "deployments", "inspect", "add/remote", "--json").stdout)[
        "paused"
    ]
    headrace(far, "deployments", "resume", "add/remote")

    retried = {}
    for where, e in (("here", env), ("there", far)):
        result = headrace(e, "runs", "retry", ended_id)
        assert result.exit_code == 0, result.stderr
        new_id = result.stdout.strip()
        name = json.loads(headrace(env, "runs", "inspect", new_id, "--json").stdout)["name"]
        retried[where] = result.stderr.replace(new_id, "ID").replace(name, "NAME")
    assert retried["there"] == retried["here"]
    assert retried["there"].startswith("Created flow run 'NAME'. Follow it with")

    queued = headrace(env, "run", "add/remote", "-p", "x=1", "--in", "1h").stdout.strip()
    for args in [
        ["runs", "delete", queued, "--yes"],
        ["runs", "retry", queued],
        ["deployments", "delete", "add/remote", "--yes"],
    ]:
        here, there = headrace(env, *args), headrace(far, *args)
        assert (there.exit_code, there.stderr) == (here.exit_code, here.stderr), args
        assert there.exit_code == 1 and there.stderr.count("\n") == 1, there.stderr
    deleted = headrace(far, "runs", "delete", cancelled_id, "--yes")
    assert deleted.stdout == "Deleted flow run 'later'.\n", deleted.stderr
    gone = headrace(env, "runs", "inspect", cancelled_id)
    assert gone.stderr.strip() == f"Error: No flow run with id {cancelled_id}"

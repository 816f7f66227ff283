"""A flow served from a file follows edits to it: the deployment route checks the new code.

Runs load the script as it is on disk, so the route that validates their
parameters loads the changed file too, its OpenAPI body follows, and a warning
says to restart the runner (the stored deployment keeps its registered schema).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from uuid import UUID

import pytest

from headrace.entrypoints import load_flow_from_entrypoint
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import client

pytestmark = pytest.mark.timeout(60)

BEFORE = """\
from headrace import flow


@flow
def greet(name: str = "world") -> str:
    return f"hello {name}"
"""
AFTER = """\
from headrace import flow


@flow
def greet(name: str = "world", punctuation: str = ".") -> str:
    return f"hello {name}{punctuation}"
"""


def edit(path: Path, text: str) -> None:
    """Write ``text`` with a modification time one second on: file times can be coarse."""
    mtime_ns = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns + 1_000_000_000))


async def test_a_parameter_added_to_a_served_file_is_accepted_and_reaches_the_run(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "greeting.py"
    path.write_text(BEFORE)
    entrypoint = f"{path}:greet"
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(
        load_flow_from_entrypoint(entrypoint), "greet", entrypoint=entrypoint
    )
    route = f"/deployment/{deployment_id}/run"
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        before = await c.post(route, json={"punctuation": "!"})
        assert before.status_code == 400, before.text
        assert before.json()["errors"] == [
            {"parameter": "punctuation", "message": "Unknown parameter"}
        ]
        assert "punctuation" not in _body_properties(await c.get("/openapi.json"), route)

        edit(path, AFTER)
        with caplog.at_level(logging.WARNING):
            after = await c.post(route, json={"name": "you", "punctuation": "!"})
        assert after.status_code == 201, after.text
        assert "Please restart the runner" in caplog.text
        assert "punctuation" in _body_properties(await c.get("/openapi.json"), route)
        misspelt = await c.post(route, json={"punctuaton": "?"})
        assert misspelt.status_code == 400, "the new schema is enforced too"
        done = await wait_for_state(runner.store, UUID(after.json()["flow_run_id"]))
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == "hello you!"


def _body_properties(response: object, route: str) -> dict[str, object]:
    document = response.json()  # type: ignore[attr-defined]
    body = document["paths"][route]["post"]["requestBody"]["content"]["application/json"]
    properties: dict[str, object] = body["schema"]["properties"]
    return properties

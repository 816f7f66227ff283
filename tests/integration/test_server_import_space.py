"""``POST /flow/run`` in-process: which flows the deployments' import space lets it start."""

from __future__ import annotations

import logging
import os
import textwrap
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from headrace.entrypoints import load_flow_from_entrypoint
from headrace.runner.server import build_server, get_subflow_schemas
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import make_runner, running, wait_for_state
from tests.integration.server_app import FLOWS_DIR, UNMANAGED, client, served

pytestmark = pytest.mark.timeout(60)


async def test_managed_flow_runs_with_its_parent(settings: Settings) -> None:
    runner, _ = await served(settings)
    app = await build_server(runner)
    parent = uuid4()
    async with running(runner), client(app) as c:
        response = await c.post(
            "/flow/run",
            json={
                "entrypoint": "tests.flows.nested:double",
                "parameters": {"x": 21},
                "parent_task_run_id": str(parent),
            },
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["flow_name"] == "double"
        assert body["parent_task_run_id"] == str(parent)
        assert body["deployment_id"] is None
        assert body["state"]["type"] == "SCHEDULED"
        done = await wait_for_state(runner.store, UUID(body["id"]))
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 42
        assert done.parent_task_run_id == parent


async def test_managed_flows_by_file_path_and_through_imports(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        by_path = await c.post(
            "/flow/run",
            json={"entrypoint": f"{FLOWS_DIR / 'nested.py'}:double", "parameters": {"x": 1}},
        )
        imported = await c.post(
            "/flow/run", json={"entrypoint": "tests.flows.nested:imported_flow"}
        )
        sibling = await c.post(
            "/flow/run", json={"entrypoint": "tests.flows.imported:not_imported"}
        )
    assert by_path.status_code == 201, by_path.text
    assert by_path.json()["entrypoint"] == f"{FLOWS_DIR / 'nested.py'}:double"
    assert imported.status_code == 201, imported.text
    assert sibling.status_code == 403, "only flows the deployments' modules bind are managed"


@pytest.mark.parametrize(
    "entrypoint",
    [
        "tests/flows/nested.py:missing",
        "tests.flows.nested:missing",
        "/not/a/path.py:flow",
        "not/a/python/file.txt:flow",
        "not/a/python/file.txt",
        "tests.flows.basic:not_a_flow",
        "no_such_module_anywhere:flow",
        "/etc/passwd:root",
        "/dev/null/x.py:f",
    ],
)
async def test_missing_flows_are_404(sqlite_settings: Settings, entrypoint: str) -> None:
    runner, _ = await served(sqlite_settings)
    await runner.add_flow(basic.add, "basic-adder")
    app = await build_server(runner)
    async with client(app) as c:
        response = await c.post("/flow/run", json={"entrypoint": entrypoint})
    assert response.status_code == 404, response.text
    assert response.json() == {"message": "Flow not found"}


async def test_flow_run_validates_parameters(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        response = await c.post(
            "/flow/run",
            json={"entrypoint": "tests.flows.nested:complex_flow", "parameters": {"scale": "big"}},
        )
        assert response.status_code == 400
        assert sorted(e["parameter"] for e in response.json()["errors"]) == ["scale", "shape"]
        for body in ({"parameters": {}}, {"entrypoint": 3}, {"entrypoint": "a:b", "parameters": 1}):
            response = await c.post("/flow/run", json=body)
            assert response.status_code == 400, body


async def test_unmanaged_flow_is_refused_without_running_its_file(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    marker = tmp_path / "imported"
    script = tmp_path / "stranger.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from pathlib import Path
            from headrace import flow
            Path({str(marker)!r}).write_text("executed")

            @flow
            def stranger() -> int:
                return 1
            """
        )
    )
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        for entrypoint in (f"{script}:stranger", UNMANAGED):
            response = await c.post("/flow/run", json={"entrypoint": entrypoint})
            assert response.status_code == 403, response.text
            assert "HEADRACE_RUNNER_SERVER_ALLOW_UNMANAGED_FLOWS" in response.json()["message"]
    assert not marker.exists()


async def test_a_served_script_named_as_a_module_is_the_same_flow(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``submit_to_runner(etl)`` after ``from flows import etl`` names ``flows:etl``."""
    module = f"served_{uuid4().hex}"
    script = tmp_path / f"{module}.py"
    script.write_text(
        textwrap.dedent(
            """
            from headrace import flow

            @flow
            def etl(n: int) -> int:
                return n * 2
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    runner = make_runner(settings)
    await runner.add_flow(load_flow_from_entrypoint(f"{script}:etl"))
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        body = {"entrypoint": f"{module}:etl", "parameters": {"n": 4}}
        response = await c.post("/flow/run", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["entrypoint"] == f"{script.resolve()}:etl"  # the loaded file
        done = await wait_for_state(runner.store, UUID(response.json()["id"]))
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 8


async def test_unmanaged_flow_allowed_runs_with_a_warning(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    allowing = settings.model_copy(update={"runner_server_allow_unmanaged_flows": True})
    runner, _ = await served(allowing)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        with caplog.at_level(logging.WARNING, logger="headrace.runner.server.triggers"):
            response = await c.post(
                "/flow/run", json={"entrypoint": UNMANAGED, "parameters": {"n": 1}}
            )
        assert response.status_code == 201, response.text
        assert "unmanaged flow" in caplog.text
        done = await wait_for_state(runner.store, UUID(response.json()["id"]))
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 101


async def test_changed_schema_runs_with_a_warning(
    sqlite_settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    script = tmp_path / "changing.py"
    script.write_text(
        "from headrace import flow\n\n@flow\ndef changing(a: int) -> int:\n    return a\n"
    )
    entrypoint = f"{script}:changing"
    original = load_flow_from_entrypoint(entrypoint)
    runner = make_runner(sqlite_settings)
    await runner.add_flow(original, "changing", entrypoint=entrypoint)
    app = await build_server(runner)
    assert (await get_subflow_schemas(runner))["changing"]["required"] == ["a"]
    script.write_text(
        "from headrace import flow\n\n@flow\ndef changing(a: int, b: int = 0) -> int:\n"
        "    return a + b\n"
    )
    built = script.stat().st_mtime_ns
    os.utime(script, ns=(built + 10**9, built + 10**9))  # a coarse clock must not hide the edit
    async with client(app) as c:
        with caplog.at_level(logging.WARNING, logger="headrace.runner.server.triggers"):
            response = await c.post(
                "/flow/run", json={"entrypoint": entrypoint, "parameters": {"a": 1, "b": 2}}
            )
    assert response.status_code == 201, response.text
    assert (
        "A change in flow parameters has been detected. Please restart the runner." in caplog.text
    )

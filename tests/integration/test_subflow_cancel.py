"""Cancelling a subflow's run on its own: the child ends CANCELLED, its call raises in the caller.

A child run executes in its caller's process; a cancel of the child (over HTTP,
as the CLI and the dashboard send it) reaches that process through the runner,
which interrupts the child's body and nothing else of the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner, Result

from headrace import store as store_module
from headrace.cli import app
from headrace.client import HeadraceClient, get_client
from headrace.exceptions import ObjectNotFound
from headrace.flow_runs import FlowRun
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import subflows
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.server_app import client as asgi_client

pytestmark = pytest.mark.timeout(90)


async def children_of(client: HeadraceClient, run_id: UUID) -> list[FlowRun]:
    return await client.read_flow_runs(parent_flow_run_id=run_id)


async def marked(client: HeadraceClient, marker: Path) -> UUID:
    """The id the subflow wrote to ``marker`` once its body has started, and its run stored."""
    text = await eventually(
        lambda: asyncio.to_thread(lambda: marker.read_text() if marker.exists() else ""),
        bool,
        what="the subflow's body to start",
    )
    child_id = UUID(text)
    await eventually(lambda: stored(client, child_id), bool, what="the subflow's run to be stored")
    return child_id


async def stored(client: HeadraceClient, run_id: UUID) -> bool:
    try:
        await client.read_flow_run(run_id)
    except ObjectNotFound:
        return False
    return True


async def cancel_child(
    settings: Settings,
    flow: Any,
    marker: Path,
    *,
    wait_for: Callable[[HeadraceClient, UUID], Any] | None = None,
    how: str = "http",
) -> tuple[FlowRun, FlowRun, int, Any]:
    """Run ``flow`` (which calls a subflow that writes ``marker``), cancel that child (over
    HTTP, with the CLI or the dashboard's button) once it started (or once ``wait_for``
    says), and wait for the caller's end: the caller, the child, and the answer."""
    runner = make_runner(settings)
    deployment = await runner.add_flow(flow)
    async with running(runner), get_client(settings) as client:
        app = await build_server(runner)
        async with asgi_client(app) as http:
            created = await http.post(f"/deployment/{deployment}/run", json={"marker": str(marker)})
            run_id = UUID(created.json()["flow_run_id"])
            child_id = await marked(client, marker)
            if wait_for is not None:
                await wait_for(client, child_id)
            if how == "cli":
                cli = await invoke(settings, "runs", "cancel", str(child_id))
                status, answer = cli.exit_code, cli.stdout
            elif how == "dashboard":
                button = await http.post(f"/ui/runs/{child_id}/cancel")
                status, answer = button.status_code, button.headers["location"]
            else:
                response = await http.post(f"/flow_runs/{child_id}/cancel")
                status, answer = response.status_code, response.json()
            parent = await wait_for_state(client.store, run_id)
            child = await wait_for_state(client.store, child_id)
    return parent, child, status, answer


async def invoke(settings: Settings, *args: str) -> Result:
    env = {
        "HEADRACE_HOME": str(settings.home),
        "HEADRACE_DATABASE_URL": settings.resolved_database_url,
        "COLUMNS": "200",
    }
    return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)


@pytest.fixture
def cli_store(settings: Settings) -> Iterator[None]:
    """The store the CLI opened in this process is closed once the runner has stopped."""
    yield
    store = store_module._stores.pop(settings.resolved_database_url, None)
    if store is not None:
        store.close()


async def test_a_cancelled_child_ends_cancelled_and_its_call_raises_in_the_caller(
    settings: Settings, tmp_path: Path
) -> None:
    parent, child, status, answer = await cancel_child(
        settings, subflows.parent_of_a_cancelled_child, tmp_path / "marker"
    )
    assert status == 202 and answer["state"]["type"] == "CANCELLING"
    assert child.state.type == StateType.CANCELLED, child.state
    assert child.state.message == "Cancelled by request"
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert parent.result == f"caught FlowRunCancelled: Flow run {child.name} was cancelled"


async def test_the_cli_and_the_dashboard_cancel_a_child_alone(
    settings: Settings, tmp_path: Path, cli_store: None
) -> None:
    flow = subflows.parent_of_a_cancelled_child
    by_cli = await cancel_child(settings, flow, tmp_path / "cli", how="cli")
    by_button = await cancel_child(settings, flow, tmp_path / "button", how="dashboard")
    parent, child, code, printed = by_cli
    assert code == 0 and printed == (
        f"Cancelling flow run '{child.name}': its caller's process stops it, and the call "
        "raises FlowRunCancelled.\n"
    )
    assert child.state.type == StateType.CANCELLED and parent.state.type == StateType.COMPLETED
    parent, child, status, location = by_button
    assert status == 303 and location == f"/ui/runs/{child.id}"
    assert child.state.type == StateType.CANCELLED and parent.state.type == StateType.COMPLETED
    assert "caught FlowRunCancelled" in parent.result


async def test_a_caller_that_does_not_catch_the_cancel_fails(
    settings: Settings, tmp_path: Path
) -> None:
    parent, child, _, _ = await cancel_child(
        settings, subflows.parent_passes_on_a_cancel, tmp_path / "marker"
    )
    assert child.state.type == StateType.CANCELLED, child.state
    assert parent.state.type == StateType.FAILED, parent.state
    assert "FlowRunCancelled" in (parent.state.message or "")


async def test_a_child_that_swallows_its_cancel_still_ends_cancelled(
    settings: Settings, tmp_path: Path
) -> None:
    parent, child, _, _ = await cancel_child(
        settings, subflows.parent_of_a_child_that_swallows_its_cancel, tmp_path / "marker"
    )
    assert child.state.type == StateType.CANCELLED, child.state
    assert parent.result == "caught"


def unrecorded(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the runner could not record of the subflows' runs."""
    return [r.getMessage() for r in caplog.records if r.name == "headrace.runner.subflow_events"]


@pytest.mark.parametrize(
    "flow", [subflows.parent_of_a_grandchild, subflows.async_parent_of_a_grandchild]
)
async def test_cancelling_a_child_ends_its_own_children(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture, flow: Any
) -> None:
    marker = tmp_path / "marker"
    runner = make_runner(settings)
    deployment = await runner.add_flow(flow)
    async with running(runner), get_client(settings) as client:
        app = await build_server(runner)
        async with asgi_client(app) as http:
            created = await http.post(f"/deployment/{deployment}/run", json={"marker": str(marker)})
            run_id = UUID(created.json()["flow_run_id"])
            grandchild_id = await marked(client, marker)
            (middle,) = await children_of(client, run_id)
            answer = await http.post(f"/flow_runs/{middle.id}/cancel")
            parent = await wait_for_state(client.store, run_id)
            middle = await wait_for_state(client.store, middle.id)
            grandchild = await wait_for_state(client.store, grandchild_id)
    assert answer.status_code == 202
    assert middle.state.type == StateType.CANCELLED, middle.state
    assert grandchild.state.type == StateType.CANCELLED, grandchild.state
    assert grandchild.parent_flow_run_id == middle.id
    ended = f"Its parent flow run {middle.name} ended (Cancelled) before it finished"
    assert grandchild.state.message == ended
    assert not unrecorded(caplog)
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert parent.result == f"caught Flow run {middle.name} was cancelled"


@pytest.mark.parametrize(
    ("caller", "caught"),
    [
        # An async child, awaited by its async caller: its task is cancelled.
        ("async_parent_of_a_cancelled_child", "caught FlowRunCancelled: "),
        # A sync child in a worker thread: raised between two of its lines.
        ("parent_of_a_child_in_a_thread", "caught "),
    ],
)
async def test_a_cancelled_child_raises_in_its_caller_wherever_it_runs(
    settings: Settings, tmp_path: Path, caller: str, caught: str
) -> None:
    parent, child, _, _ = await cancel_child(
        settings, getattr(subflows, caller), tmp_path / "marker"
    )
    assert child.state.type == StateType.CANCELLED, child.state
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert parent.result == f"{caught}Flow run {child.name} was cancelled"


async def awaiting_its_retry(client: HeadraceClient, child_id: UUID) -> FlowRun:
    return await eventually(
        lambda: client.read_flow_run(child_id),
        lambda run: run.state.name == "AwaitingRetry",
        what="the subflow's run to await its retry",
    )


async def test_a_child_awaiting_its_retry_is_cancelled_and_never_runs_again(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parent, child, status, answer = await cancel_child(
        settings,
        subflows.parent_of_a_cancelled_retry,
        tmp_path / "marker",
        wait_for=awaiting_its_retry,
    )
    assert status == 202 and answer["state"]["type"] == "CANCELLED"
    assert child.state.type == StateType.CANCELLED, child.state
    assert child.state.message == "Cancelled while waiting to run again"
    assert child.run_count == 1
    assert not unrecorded(caplog)
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert parent.result == f"caught Flow run {child.name} was cancelled"


async def test_recovery_leaves_a_running_subflows_own_subflow_alone(
    settings: Settings, tmp_path: Path
) -> None:
    marker, release = tmp_path / "marker", tmp_path / "release"
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent_of_a_released_grandchild)
    async with running(runner), get_client(settings) as client:
        parameters = {"marker": str(marker), "release": str(release)}
        run = await client.create_flow_run_from_deployment(deployment, parameters)
        grandchild_id = await marked(client, marker)
        assert runner._session is not None
        await runner._session.liveness.recover_orphans()  # its parent is no run it claimed
        during = await client.read_flow_run(grandchild_id)
        release.touch()
        parent = await wait_for_state(client.store, run.id)
        grandchild = await wait_for_state(client.store, grandchild_id)
    assert during.state.type == StateType.RUNNING, during.state
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert grandchild.state.type == StateType.COMPLETED and grandchild.result == "released"


async def test_a_child_cancelled_while_it_logs_large_lines_leaves_its_callers_events_whole(
    settings: Settings, tmp_path: Path
) -> None:
    # Half a message on the socket: the child's end and the parent's log are lost, and the
    # parent's end comes from its journal only (the child is then CRASHED with it).
    parent, child, _, _ = await cancel_child(
        settings, subflows.parent_of_a_loud_child_in_a_thread, tmp_path / "marker"
    )
    assert child.state.type == StateType.CANCELLED, child.state
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert parent.result == f"caught Flow run {child.name} was cancelled"
    async with get_client(settings) as client:
        logs = [line.message for line in await client.read_logs(parent.id)]
    assert any(m.endswith("the parent goes on after the cancel") for m in logs), logs[-3:]

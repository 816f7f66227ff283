"""Subflows: a flow called inside a run is a child run, executed in the caller's process."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from headrace.client import HeadraceClient, get_client
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord, SQLStore
from tests.flows import subflows
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.test_outcome_durability import runner_process

pytestmark = pytest.mark.timeout(90)


async def children_of(client: HeadraceClient, run: FlowRun) -> list[FlowRun]:
    return await client.read_flow_runs(parent_flow_run_id=run.id)


async def test_a_subflow_is_a_child_run_with_its_own_context_and_logs(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"x": 5})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.COMPLETED, done.state.message
        (child,) = await children_of(client, run)
        child_logs = await client.read_logs(child.id)
        parent_logs = await client.read_logs(run.id)
        child_history = await client.read_state_history(child.id)
    result = done.result
    assert result["child"]["value"] == 10
    assert (
        result["before"]
        == result["after"]
        == {
            "id": str(run.id),
            "name": run.name,
            "parent_flow_run_id": None,
            "run_count": 1,
        }
    )
    assert result["child"]["context"] == {
        "id": str(child.id),
        "name": child.name,
        "parent_flow_run_id": str(run.id),
        "run_count": 1,
    }
    assert child.parent_flow_run_id == run.id and done.parent_flow_run_id is None
    assert child.flow_name == "double" and child.parameters == {"x": 5}
    assert child.state.type == StateType.COMPLETED and child.result == result["child"]
    assert child.pid == done.pid  # the caller's process
    assert [s.type for s in child_history] == [StateType.RUNNING, StateType.COMPLETED]
    assert any("doubling 5" in line.message for line in child_logs)
    assert not any("doubling 5" in line.message for line in parent_logs)
    assert any("the child returned 10" in line.message for line in parent_logs)
    child_lines = [line.message for line in child_logs]
    assert "printed while doubling 5" in child_lines and "no newline at the end" in child_lines
    parent_lines = [line.message for line in parent_logs]
    assert "printed by the parent" in parent_lines
    assert not any("doubling" in line or "no newline" in line for line in parent_lines)


async def test_a_failing_subflow_raises_in_its_parent(settings: Settings) -> None:
    runner = make_runner(settings)
    caught = await runner.add_flow(subflows.parent_of_failure)
    passed_on = await runner.add_flow(subflows.parent_fails_through_child)
    async with running(runner), get_client(settings) as client:
        first = await client.create_flow_run_from_deployment(caught)
        second = await client.create_flow_run_from_deployment(passed_on)
        first_done = await wait_for_state(client.store, first.id)
        second_done = await wait_for_state(client.store, second.id)
        (first_child,) = await children_of(client, first)
        (second_child,) = await children_of(client, second)
    assert first_done.state.type == StateType.COMPLETED
    assert first_done.result == "caught no thanks"
    assert first_child.state.type == StateType.FAILED
    assert "Refused: no thanks" in (first_child.state.message or "")
    assert second_done.state.type == StateType.FAILED
    assert "Refused: passed on" in (second_done.state.message or "")
    assert second_child.state.type == StateType.FAILED


async def test_a_subflow_retries_in_its_own_run(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent_of_flaky)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
        (child,) = await children_of(client, run)
        history = await client.read_state_history(child.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == 3 and done.run_count == 1
    assert child.run_count == 3 and child.result == 3 and child.max_retries == 2
    assert [s.name for s in history] == [
        "Running",
        "AwaitingRetry",
        "Pending",
        "Running",
        "AwaitingRetry",
        "Pending",
        "Running",
        "Completed",
    ]


async def test_an_async_subflow_is_awaited_as_a_child_run(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.async_parent)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
        (child,) = await children_of(client, run)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result["child"]["value"] == 8
    assert done.result["child"]["context"]["id"] == str(child.id)
    assert done.result["after"]["id"] == str(run.id)
    assert child.state.type == StateType.COMPLETED


def test_child_runs_are_never_claimed_on_their_own(store: SQLStore) -> None:
    """A child awaiting its retry (its parent's process waits out the delay) is no claim's."""
    runner = RunnerRecord(name="here")
    store.register_runner(runner)
    parent_id = uuid4()
    new = NewFlowRun(
        flow_name="child", parent_flow_run_id=parent_id, runner_id=runner.id, max_retries=1
    )
    child = store.create_child_flow_run(new, flow_run_id=uuid4(), started=utcnow())
    waiting = State(type=StateType.SCHEDULED, name="AwaitingRetry")
    store.set_state(child.id, waiting, expected_start_time=utcnow() - timedelta(seconds=1))
    assert store.count_queued_runs([], runner.id, cap=10) == 0
    assert store.next_due_time([], runner.id) is None
    assert store.claim_runs(deployment_ids=[], runner=runner, limit=10) == []
    assert store.read_addressed_runs(uuid4()) == []
    restarted = store.restart_child_flow_run(child.id, 2, utcnow())
    assert restarted.state.type == StateType.RUNNING and restarted.run_count == 2
    assert [c.id for c in store.read_flow_runs(parent_flow_run_id=parent_id)] == [child.id]


async def test_children_list_only_a_runs_children(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent)
    async with running(runner), get_client(settings) as client:
        runs = [await client.create_flow_run_from_deployment(deployment) for _ in range(2)]
        for run in runs:
            await wait_for_state(client.store, run.id)
        found = await eventually(
            lambda: children_of(client, runs[0]), lambda c: len(c) == 1, what="one child"
        )
    assert found[0].parent_flow_run_id == runs[0].id


async def test_child_runs_of_a_killed_runner_end_crashed_with_their_parent(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "child-started"
    with runner_process(database_url, settings.home) as process:
        async with get_client(settings) as client:
            flow_name = "parent-of-a-long-child"
            deployment = await client.read_deployment_by_name(flow_name, "long-child")
            run = await client.create_flow_run_from_deployment(
                deployment.id, {"marker": str(marker)}
            )
            await eventually(
                lambda: children_of(client, run), bool, what="the subflow's run to be stored"
            )
        await eventually(
            lambda: asyncio.to_thread(lambda: marker.exists() and bool(marker.read_text())),
            bool,
            what="the subflow's body to start",
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    child_id = UUID(marker.read_text())
    runner = make_runner(settings)  # on the same host: it sees the dead runner is gone
    await runner.add_flow(subflows.parent_of_a_long_child, "long-child")
    async with running(runner), get_client(settings) as client:
        parent = await wait_for_state(client.store, run.id)
        child = await wait_for_state(client.store, child_id)
    assert parent.state.type == StateType.CRASHED, parent.state
    assert child.state.type == StateType.CRASHED, child.state
    assert child.run_count == 1 and child.parent_flow_run_id == run.id
    assert "died" in (child.state.message or ""), child.state.message


async def test_a_child_open_when_its_parent_times_out_ends_with_it(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent_timing_out)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(
            deployment, {"marker": str(tmp_path / "marker")}
        )
        parent = await wait_for_state(client.store, run.id)
        (child,) = await children_of(client, run)
    assert parent.state.type == StateType.FAILED and "timed out" in (parent.state.message or "")
    assert child.state.type == StateType.CRASHED, child.state
    ended = f"Its parent flow run {run.name} ended (Failed) before it finished"
    assert child.state.message == ended


async def test_a_subflow_that_times_out_fails_and_raises_in_its_parent(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(subflows.parent_of_a_slow_child)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        parent = await wait_for_state(client.store, run.id)
        (child,) = await children_of(client, run)
    assert parent.state.type == StateType.COMPLETED, parent.state.message
    assert parent.result == "Flow run timed out after 0.5 s"
    assert child.state.type == StateType.FAILED and child.timeout_seconds == 0.5
    assert "TimeoutError: Flow run timed out after 0.5 s" in (child.state.message or "")


async def test_a_child_awaiting_its_retry_ends_with_its_parent_when_the_runner_dies(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "child-ran"
    with runner_process(database_url, settings.home) as process:
        async with get_client(settings) as client:
            flow_name = "parent-of-a-child-awaiting-a-retry"
            deployment = await client.read_deployment_by_name(flow_name, "retrying-child")
            run = await client.create_flow_run_from_deployment(
                deployment.id, {"marker": str(marker)}
            )
            (waiting,) = await eventually(
                lambda: children_of(client, run),
                lambda c: [child.state.name for child in c] == ["AwaitingRetry"],
                what="the subflow's run to await its retry",
            )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    runner = make_runner(settings)  # on the same host: it sees the dead runner is gone
    await runner.add_flow(subflows.parent_of_a_child_awaiting_a_retry, "retrying-child")
    async with running(runner), get_client(settings) as client:
        parent = await wait_for_state(client.store, run.id)
        child = await wait_for_state(client.store, waiting.id)
        scheduled = await client.read_flow_runs(states=[StateType.SCHEDULED])
    assert parent.state.type == StateType.CRASHED, parent.state
    assert child.state.type == StateType.CRASHED, child.state
    assert f"Its parent flow run {run.name} ended (Crashed)" in (child.state.message or "")
    assert waiting.id not in [r.id for r in scheduled]

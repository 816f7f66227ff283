"""Tasks inside real runs: recorded task runs, retries, failures, futures and the cache."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from uuid import UUID

import pytest

from headrace.client import get_client
from headrace.flow_runs import FlowRun
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from headrace.task_runs import TaskRun
from tests.flows import tasks
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.test_outcome_durability import runner_process

pytestmark = pytest.mark.timeout(120)


async def _run(
    runner: Runner, deployment: UUID, settings: Settings, **parameters: object
) -> tuple[FlowRun, list[TaskRun]]:
    async with get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, parameters)
        done = await wait_for_state(client.store, run.id, timeout=60)
        return done, await client.read_task_runs(run.id)


async def test_a_flow_records_its_task_runs_with_retries_and_futures(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.with_tasks)
    async with running(runner):
        done, task_runs = await _run(runner, deployment, settings, counter=str(tmp_path / "n"))
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == {"flaky": 3, "doubled": [2, 4, 6], "tripled": [3, 6]}
    by_name = {t.name: t for t in task_runs}
    assert sorted(by_name) == [
        "double-0",
        "double-1",
        "double-2",
        "flaky-0",
        "triple-0",
        "triple-1",
    ]
    assert all(t.state.type == StateType.COMPLETED for t in task_runs)
    assert by_name["flaky-0"].run_count == 3
    assert all(t.start_time and t.end_time and t.start_time <= t.end_time for t in task_runs)
    async with get_client(settings) as client:
        logs = [line.message for line in await client.read_logs(done.id)]
    assert any(m.startswith("flaky-0 | ") and "flaky worked on attempt 3" in m for m in logs)


async def test_an_async_flow_awaits_and_submits_tasks(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.async_with_tasks)
    async with running(runner):
        done, task_runs = await _run(runner, deployment, settings)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == [3, 6, 9, 8]
    assert len(task_runs) == 4


async def test_a_failing_task_fails_the_flow_and_says_why(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.task_fails)
    async with running(runner):
        done, task_runs = await _run(runner, deployment, settings)
    assert done.state.type == StateType.FAILED
    assert "ValueError: no good" in (done.state.message or "")
    states = {t.name: (t.state.type, t.state.message) for t in task_runs}
    assert states["double-0"] == (StateType.COMPLETED, None)
    assert states["broken-0"] == (StateType.FAILED, "Task run raised ValueError: no good")


async def test_cached_results_are_reused_across_runs_and_a_flow_retry(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings)
    cached = await runner.add_flow(tasks.cached)
    retried = await runner.add_flow(tasks.cached_then_fails)
    counter = tmp_path / "calls"
    async with running(runner):
        first, first_tasks = await _run(runner, cached, settings, x=4, counter=str(counter))
        second, second_tasks = await _run(runner, cached, settings, x=4, counter=str(counter))
        other, _ = await _run(runner, cached, settings, x=5, counter=str(counter))
        assert counter.read_text() == "2"  # x=4 once, x=5 once: every other call was cached
        assert [first.result, second.result, other.result] == [80, 80, 100]
        assert [t.state.name for t in first_tasks] == ["Completed", "Cached"]
        assert [t.state.name for t in second_tasks] == ["Cached", "Cached"]

        retry_counter = tmp_path / "retry-calls"
        done, task_runs = await _run(runner, retried, settings, x=7, counter=str(retry_counter))
    assert done.state.type == StateType.COMPLETED and done.run_count == 2, done.state.message
    assert done.result == 70
    assert retry_counter.read_text() == "1"  # the retry skipped the task that had succeeded
    assert sorted(t.state.name for t in task_runs) == ["Cached", "Completed"]


async def test_a_cached_result_expires(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.cached_briefly)
    counter = tmp_path / "calls"
    async with running(runner):
        await _run(runner, deployment, settings, x=1, counter=str(counter))
        _, again = await _run(runner, deployment, settings, x=1, counter=str(counter))
        assert counter.read_text() == "1" and again[0].state.name == "Cached"
        async with get_client(settings) as client:
            # Past its expiration the task runs again.
            async def expired() -> bool:
                return not await client.store.read_task_cache(str(deployment), utcnow())

            await eventually(expired, bool, timeout=30, what="the cache entry to expire")
        _, later = await _run(runner, deployment, settings, x=1, counter=str(counter))
    assert counter.read_text() == "2" and later[0].state.name == "Completed"


async def test_a_run_with_a_thousand_task_calls_completes(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.many_tasks)
    async with running(runner):
        done, task_runs = await _run(runner, deployment, settings, n=1000)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == 999 * 1000
    assert len(task_runs) == 1000
    assert all(t.state.type == StateType.COMPLETED for t in task_runs)


async def test_a_task_still_running_when_its_flow_ends_is_crashed(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.leaves_a_task_running)
    async with running(runner):
        done, task_runs = await _run(runner, deployment, settings)
    assert done.state.type == StateType.COMPLETED, done.state.message
    [left] = task_runs
    assert left.state.type == StateType.CRASHED and left.end_time is not None
    assert left.state.message == "Its flow run's process ended before this task run did"


async def test_a_task_running_when_its_runner_is_killed_ends_crashed_on_recovery(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "task-started"
    with runner_process(database_url, settings.home) as process:
        async with get_client(settings) as client:
            deployment = await client.read_deployment_by_name(
                "waits-on-a-sleeping-task", "sleeping-task"
            )
            run = await client.create_flow_run_from_deployment(
                deployment.id, {"marker": str(marker)}
            )
            await eventually(
                lambda: client.read_task_runs(run.id),
                lambda found: [t.state.type for t in found] == [StateType.RUNNING],
                what="its task run to be stored RUNNING",
            )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    runner = make_runner(settings)  # on the same host: it sees the dead runner is gone
    await runner.add_flow(tasks.waits_on_a_sleeping_task, "sleeping-task")
    async with running(runner), get_client(settings) as client:
        done = await wait_for_state(client.store, run.id, timeout=60)
        [left] = await client.read_task_runs(run.id)
    assert done.state.type == StateType.CRASHED, done.state
    assert left.state.type == StateType.CRASHED and left.end_time is not None, left.state
    assert left.state.message == "Its flow run's process ended before this task run did"


async def test_a_task_called_in_a_subflow_is_a_task_run_of_the_subflow(
    settings: Settings,
) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(tasks.parent_and_child_call_tasks)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id, timeout=60)
        (child,) = await client.read_flow_runs(parent_flow_run_id=run.id)
        in_parent = await client.read_task_runs(run.id)
        in_child = await client.read_task_runs(child.id)
    assert done.state.type == StateType.COMPLETED and done.result == 4, done.state
    assert [(t.task_name, t.flow_run_id) for t in in_child] == [("double", child.id)]
    assert [(t.task_name, t.flow_run_id) for t in in_parent] == [("double", run.id)]
    assert all(t.state.type == StateType.COMPLETED for t in in_parent + in_child)

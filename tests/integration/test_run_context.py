"""A run's body sees its own run: ``headrace.runtime.flow_run`` and the run's variables."""

from __future__ import annotations

import pytest

from headrace.client import get_client
from headrace.flow_runs import FlowRun
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import context
from tests.helpers import eventually, make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(90)


async def test_a_run_sees_its_own_context_in_its_body_and_threads(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(context.report_context)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment, {"day": "friday"})
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.expected_start_time is not None
    assert done.result == {
        "id": str(run.id),
        "name": run.name,
        "run_count": 1,
        "parameters": {"day": "friday"},
        "deployment_id": str(deployment),
        "scheduled_start_time": done.expected_start_time.isoformat(),
        "aware": True,
        "parent_flow_run_id": None,
    }


async def test_an_async_flow_sees_its_context(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(context.report_context_async)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result["id"] == str(run.id) and done.result["run_count"] == 1


async def test_a_scheduled_run_sees_its_planned_time(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(context.report_context_on_schedule, "ticker", interval=1)
    async with running(runner), get_client(settings) as client:

        async def completed() -> list[FlowRun]:
            runs = await client.store.read_flow_runs(deployment_id=deployment)
            return [r for r in runs if r.state.type == StateType.COMPLETED]

        runs = await eventually(completed, bool, timeout=30, what="a scheduled run to finish")
    run = runs[0]
    assert run.idempotency_key is not None and run.idempotency_key.startswith("scheduled:")
    assert run.expected_start_time is not None
    assert run.expected_start_time.microsecond == 0  # on the interval's grid: the planned time
    assert run.result["scheduled_start_time"] == run.expected_start_time.isoformat()
    assert run.result["run_count"] == 1 and run.result["aware"] is True


async def test_a_retry_sees_its_attempt(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(context.fails_first_attempt)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == 2


async def test_programs_a_run_starts_see_its_variables(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment = await runner.add_flow(context.environment_of_a_program)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment)
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.result == [str(run.id), run.name, "1"]

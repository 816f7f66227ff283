"""Schedules materialised into runs: once each, on time, on both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from headrace.client import get_client
from headrace.deployments import Deployment, DeploymentSpec
from headrace.exceptions import InvalidDeployment
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.runner import Runner
from headrace.runner.scheduling import plan_scheduled_runs
from headrace.schedules import (
    DeploymentSchedule,
    IntervalSchedule,
    construct_schedule,
    schedule_key,
)
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import AsyncStore
from tests.flows import basic
from tests.helpers import eventually, make_runner, running

pytestmark = pytest.mark.timeout(60)

START_SLACK_SECONDS = 10.0
"""How late a loaded machine may start a due run's process: still far under a poll."""


def every(seconds: float) -> DeploymentSpec:
    schedule = construct_schedule(interval=seconds)
    assert schedule is not None
    return DeploymentSpec(name="every", flow_name="touch", schedules=[schedule], entrypoint="x:y")


async def test_planning_twice_creates_no_duplicates(async_store: AsyncStore) -> None:
    deployment = await async_store.upsert_deployment(every(60))
    first = await plan_scheduled_runs(async_store, [deployment])
    again = await plan_scheduled_runs(async_store, [deployment])
    assert first == 3 and again == 0
    runs = await async_store.read_flow_runs(deployment_id=deployment.id)
    assert len(runs) == 3
    assert len({r.expected_start_time for r in runs}) == 3
    assert all(r.idempotency_key and r.idempotency_key.startswith("scheduled:") for r in runs)


async def test_changing_a_schedule_removes_its_future_runs(async_store: AsyncStore) -> None:
    deployment = await async_store.upsert_deployment(every(60))
    await plan_scheduled_runs(async_store, [deployment])
    manual, _ = await async_store.create_flow_run(
        NewFlowRun(flow_name="touch", deployment_id=deployment.id)
    )
    changed = await async_store.upsert_deployment(every(120))
    assert changed.id == deployment.id
    left = await async_store.read_flow_runs(deployment_id=deployment.id)
    assert [r.id for r in left] == [manual.id]  # manual runs are never removed
    await plan_scheduled_runs(async_store, [changed])
    runs = await async_store.read_flow_runs(deployment_id=deployment.id)
    key = schedule_key(changed.schedules[0])
    assert sum(1 for r in runs if (r.idempotency_key or "").startswith(f"scheduled:{key}")) == 3


async def test_changed_defaults_reach_runs_already_planned(async_store: AsyncStore) -> None:
    deployment = await async_store.upsert_deployment(
        every(60).model_copy(update={"parameters": {"tag": "old"}})
    )
    await plan_scheduled_runs(async_store, [deployment])
    planned = await async_store.read_flow_runs(deployment_id=deployment.id)
    same = await async_store.upsert_deployment(
        every(60).model_copy(update={"parameters": {"tag": "old"}})
    )
    assert await async_store.read_flow_runs(deployment_id=deployment.id) == planned  # a restart
    changed = await async_store.upsert_deployment(
        every(60).model_copy(update={"parameters": {"tag": "new"}, "retries": 2})
    )
    assert same.id == changed.id
    await plan_scheduled_runs(async_store, [changed])
    runs = await async_store.read_flow_runs(deployment_id=deployment.id)
    assert sorted(r.expected_start_time for r in runs) == sorted(
        r.expected_start_time for r in planned
    )
    assert {r.parameters["tag"] for r in runs} == {"new"}
    assert {r.max_retries for r in runs} == {2}


async def planned_at(store: AsyncStore, deployment: Deployment, at: datetime) -> FlowRun:
    """A run of the deployment's (first) schedule for ``at``, as planning creates it."""
    key = schedule_key(deployment.schedules[0])
    run, _ = await store.create_flow_run(
        NewFlowRun(
            flow_name="touch",
            deployment_id=deployment.id,
            idempotency_key=f"scheduled:{key}:{at.isoformat()}",
            expected_start_time=at,
        )
    )
    return run


async def test_pausing_drops_overdue_planned_runs_too(async_store: AsyncStore) -> None:
    """Runs that fell due while no runner was up must not start once the schedule is paused."""
    deployment = await async_store.upsert_deployment(every(60))
    overdue = await planned_at(async_store, deployment, utcnow() - timedelta(minutes=5))
    changed = await async_store.upsert_deployment(every(60).model_copy(update={"retries": 1}))
    assert [r.id for r in await async_store.read_flow_runs(deployment_id=changed.id)] == [
        overdue.id
    ], "new defaults replan future runs only"
    await async_store.upsert_deployment(every(60).model_copy(update={"paused": True}))
    assert await async_store.read_flow_runs(deployment_id=deployment.id) == []


async def test_the_time_a_deployment_was_paused_is_not_missed_time(
    async_store: AsyncStore,
) -> None:
    catching_up = every(60).model_copy(update={"catchup": True})
    deployment = await async_store.upsert_deployment(catching_up)
    last = await planned_at(async_store, deployment, utcnow() - timedelta(minutes=10))
    await async_store.set_state(last.id, State(type=StateType.PENDING))
    await async_store.set_state(last.id, State(type=StateType.COMPLETED))
    await async_store.upsert_deployment(catching_up.model_copy(update={"paused": True}))
    resumed = await async_store.upsert_deployment(catching_up)  # ten minutes paused, say
    assert resumed.planning_since is not None
    assert await plan_scheduled_runs(async_store, [resumed]) == 3  # upcoming ones only
    runs = await async_store.read_flow_runs(deployment_id=deployment.id)
    assert [r for r in runs if r.state.name == "Late"] == []
    restarted = await async_store.upsert_deployment(catching_up)  # unchanged: no fresh start
    assert restarted.planning_since == resumed.planning_since


async def test_paused_deployment_plans_nothing_and_drops_planned_runs(
    async_store: AsyncStore,
) -> None:
    deployment = await async_store.upsert_deployment(every(60))
    await plan_scheduled_runs(async_store, [deployment])
    paused = await async_store.upsert_deployment(every(60).model_copy(update={"paused": True}))
    assert await plan_scheduled_runs(async_store, [paused]) == 0
    assert await async_store.read_flow_runs(deployment_id=deployment.id) == []


async def test_a_schedule_that_leaves_the_calendar_does_not_stop_the_others(
    async_store: AsyncStore,
) -> None:
    # Stored by hand, or by a version that let it through: its times pass the year 9999.
    huge = DeploymentSchedule(schedule=IntervalSchedule(interval=timedelta(seconds=1e12)))
    doomed = every(60).model_copy(update={"name": "doomed", "schedules": [huge]})
    await async_store.upsert_deployment(doomed)
    fine = await async_store.upsert_deployment(every(60))
    stored = await async_store.read_deployments()  # the stored record loads, as it was
    assert len(stored) == 2
    assert await plan_scheduled_runs(async_store, stored) == 3
    assert len(await async_store.read_flow_runs(deployment_id=fine.id)) == 3


def test_an_interval_past_the_calendar_is_refused_when_registered() -> None:
    with pytest.raises(InvalidDeployment, match="its times leave the calendar"):
        basic.add.to_deployment("huge", interval=1e12)


async def test_a_run_waiting_to_retry_does_not_hide_the_times_missed_since(
    async_store: AsyncStore,
) -> None:
    deployment = await async_store.upsert_deployment(every(60))
    key = schedule_key(deployment.schedules[0])
    await plan_scheduled_runs(async_store, [deployment])
    runs = await async_store.read_flow_runs(deployment_id=deployment.id)
    last = max(r.expected_start_time for r in runs)
    # Its newest run failed and waits two hours to retry: its start time moves, not its slot.
    (newest,) = [r for r in runs if r.expected_start_time == last]
    await async_store.set_state(newest.id, State(type=StateType.PENDING))
    await async_store.set_state(
        newest.id,
        State(type=StateType.SCHEDULED, name="AwaitingRetry"),
        expected_start_time=last + timedelta(hours=2),
    )
    assert await async_store.last_planned_times(deployment.id, [key]) == {key: last}


async def test_missed_runs_follow_the_catchup_policy(async_store: AsyncStore) -> None:
    spec = every(60)
    deployment = await async_store.upsert_deployment(spec)
    key = schedule_key(deployment.schedules[0])
    long_ago = utcnow().replace(microsecond=0) - timedelta(minutes=10)
    # Pretend a runner planned up to 10 minutes ago, then nothing ran.
    await async_store.create_flow_run(
        NewFlowRun(
            flow_name="touch",
            deployment_id=deployment.id,
            idempotency_key=f"scheduled:{key}:{long_ago.isoformat()}",
            expected_start_time=long_ago,
        )
    )
    await plan_scheduled_runs(async_store, [deployment])
    late = [
        r
        for r in await async_store.read_flow_runs(deployment_id=deployment.id)
        if r.state.name == "Late"
    ]
    assert len(late) == 1  # catchup=False: only the most recent missed run

    catchup = await async_store.upsert_deployment(spec.model_copy(update={"name": "catchup"}))
    catchup_key = schedule_key(catchup.schedules[0])
    await async_store.create_flow_run(
        NewFlowRun(
            flow_name="touch",
            deployment_id=catchup.id,
            idempotency_key=f"scheduled:{catchup_key}:{long_ago.isoformat()}",
            expected_start_time=long_ago,
        )
    )
    catchup = await async_store.upsert_deployment(
        spec.model_copy(update={"name": "catchup", "catchup": True})
    )
    await plan_scheduled_runs(async_store, [catchup])
    late = [
        r
        for r in await async_store.read_flow_runs(deployment_id=catchup.id)
        if r.state.name == "Late"
    ]
    # Every missed minute: the window is ten minutes plus the test's own time, so the
    # minute it crosses (if any) is missed too.
    assert 10 <= len(late) <= 11


async def test_two_runners_share_a_schedule_without_duplicates(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "markers"
    first = make_runner(settings, name="one", query_seconds=0.3)
    second = make_runner(settings, name="two", query_seconds=0.3)
    for runner in (first, second):
        deployment_id = await runner.add_flow(
            basic.touch, "ticker", interval=1, parameters={"t0": 0, "out": str(out)}
        )
    async with running(first), running(second), get_client(settings) as client:
        await eventually(
            lambda: client.read_flow_runs(
                deployment_id=deployment_id, states=[StateType.COMPLETED]
            ),
            lambda runs: len(runs) >= 3,
            timeout=15,
            what="three scheduled runs to complete",
        )
    async with get_client(settings) as client:
        runs = await client.read_flow_runs(deployment_id=deployment_id, limit=1000)
    times = [r.expected_start_time for r in runs]
    assert len(times) == len(set(times)), "a scheduled time was materialised twice"
    starts = [line for line in out.read_text().splitlines() if line.startswith("start")]
    completed = [r for r in runs if r.state.type == StateType.COMPLETED]
    assert len(starts) >= len(completed)


async def test_a_running_runner_follows_a_newer_registration_from_another_process(
    settings: Settings,
) -> None:
    serving = make_runner(settings, query_seconds=0.2)
    deployment_id = await serving.add_flow(basic.add, "hourly", cron="0 * * * *")
    async with running(serving), get_client(settings) as client:
        # Another process registers the same deployment with another schedule and a limit.
        other = make_runner(settings)
        registered = await other.add_flow(
            basic.add, "hourly", cron="30 * * * *", concurrency_limit=1
        )
        assert registered == deployment_id
        registered_at = utcnow()
        (new_schedule,) = (await client.read_deployment(deployment_id)).schedules
        polls = await _polls(serving)
        await eventually(lambda: _polls(serving), lambda n: n >= polls + 5, what="more polls")
        runs = await client.read_flow_runs(deployment_id=deployment_id, limit=1000)
    key = f"scheduled:{schedule_key(new_schedule)}:"
    # A poll that read the old definition just before the change may still plan one run.
    settled = registered_at + timedelta(seconds=1)
    late_old = [r for r in runs if r.created > settled and not r.idempotency_key.startswith(key)]
    assert late_old == [], "the old schedule kept being planned"
    assert any(r.idempotency_key.startswith(key) for r in runs), "the new schedule planned nothing"
    assert serving.deployments[deployment_id].concurrency_limit == 1


async def _polls(runner: Runner) -> int:
    assert runner._session is not None
    return runner._session.liveness.polls


async def test_a_due_scheduled_run_starts_at_its_time_not_at_the_next_poll(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "markers"
    runner = make_runner(settings, query_seconds=600)  # far longer than the test's own timeout
    deployment_id = await runner.add_flow(
        basic.touch, "ticker", interval=1, parameters={"t0": 0, "out": str(out)}
    )
    async with running(runner), get_client(settings) as client:
        runs = await eventually(
            lambda: client.read_flow_runs(
                deployment_id=deployment_id, states=[StateType.COMPLETED]
            ),
            lambda runs: len(runs) >= 2,
            timeout=30,
            what="two scheduled runs to complete",
        )
    for run in runs:
        assert run.start_time is not None and run.expected_start_time is not None
        late = (run.start_time - run.expected_start_time).total_seconds()
        # Started at its time: well under a second on an idle machine, far under the poll
        # here; the bound is what a loaded 2-core machine may add to starting a process.
        assert late < START_SLACK_SECONDS, f"started {late:.1f} s after its time"

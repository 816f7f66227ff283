"""Pausing, resuming and deleting deployments, deleting and retrying runs: SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from headrace.client import HeadraceClient, get_client
from headrace.exceptions import InvalidStateTransition, ObjectNotFound, StoreError
from headrace.flow_runs import LogRecord
from headrace.runner import Runner
from headrace.runner.scheduling import plan_scheduled_runs
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import AsyncStore, SQLStore
from tests.flows import basic
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.test_scheduling import every
from tests.integration.test_store import queue_runs, spec

pytestmark = pytest.mark.timeout(60)


def _end(store: SQLStore, run_id: UUID, state: StateType = StateType.COMPLETED) -> None:
    store.set_state(run_id, State(type=StateType.PENDING))
    store.set_state(run_id, State(type=state))


def test_an_ended_run_is_deleted_with_its_states_and_logs(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    ended, queued = queue_runs(store, deployment.id, 2)
    _end(store, ended, StateType.FAILED)
    line = LogRecord(flow_run_id=ended, level=20, message="hello", timestamp=utcnow())
    store.write_logs([line])
    store.delete_flow_run(ended)
    with pytest.raises(ObjectNotFound):
        store.read_flow_run(ended)
    assert store.read_logs(ended) == []
    assert store.read_state_history(ended) == []
    with pytest.raises(InvalidStateTransition, match="has not ended"):
        store.delete_flow_run(queued)
    assert store.read_flow_run(queued).state.type == StateType.SCHEDULED


def test_a_deployment_is_deleted_with_its_queued_runs_its_ended_runs_stay(
    store: SQLStore,
) -> None:
    deployment = store.upsert_deployment(spec())
    ended, queued = queue_runs(store, deployment.id, 2)
    _end(store, ended)
    assert store.delete_deployment(deployment.id) == 1
    with pytest.raises(ObjectNotFound):
        store.read_deployment(deployment.id)
    with pytest.raises(ObjectNotFound):
        store.read_flow_run(queued)
    kept = store.read_flow_run(ended)
    assert kept.deployment_id is None and kept.state.type == StateType.COMPLETED


def test_a_deployment_with_a_run_being_executed_is_not_deleted(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    store.set_state(run_id, State(type=StateType.PENDING))
    with pytest.raises(InvalidStateTransition, match="being executed"):
        store.delete_deployment(deployment.id)
    assert store.read_deployment(deployment.id).id == deployment.id
    with pytest.raises(ObjectNotFound):
        store.delete_deployment(run_id)


async def test_pausing_drops_planned_runs_and_resuming_plans_from_now(
    async_store: AsyncStore,
) -> None:
    deployment = await async_store.upsert_deployment(every(60))
    assert await plan_scheduled_runs(async_store, [deployment]) > 0
    paused = await async_store.set_deployment_paused(deployment.id, True)
    assert paused.paused
    assert await async_store.read_flow_runs(deployment_id=deployment.id) == []
    assert await plan_scheduled_runs(async_store, [paused]) == 0
    resumed = await async_store.set_deployment_paused(deployment.id, False)
    assert not resumed.paused and resumed.planning_since is not None
    assert await plan_scheduled_runs(async_store, [resumed]) > 0
    runs = await async_store.read_flow_runs(deployment_id=deployment.id)
    assert [r for r in runs if r.state.name == "Late"] == []


def test_backup_of_a_postgresql_database_points_to_pg_dump(store: SQLStore, tmp_path: Path) -> None:
    if store.is_sqlite:
        pytest.skip("PostgreSQL only")
    with pytest.raises(StoreError, match="pg_dump"):
        store.backup(tmp_path / "copy.db")


async def test_a_paused_deployment_starts_no_scheduled_runs_on_a_serving_runner(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "starts"
    runner = make_runner(settings, query_seconds=0.2)
    parameters = {"t0": 0, "out": str(out)}
    deployment_id = await runner.add_flow(basic.touch, "ticker", interval=1, parameters=parameters)
    async with running(runner), get_client(settings) as client:
        await eventually(lambda: _starts(out), lambda n: n >= 1, what="a scheduled run")
        await client.set_deployment_paused(deployment_id, True)
        await eventually(
            lambda: _active(client, deployment_id), lambda n: n == 0, what="runs to end"
        )
        before = await _starts(out)
        polls = await _polls(runner)
        await eventually(
            lambda: _polls(runner), lambda n: n >= polls + 10, timeout=20, what="more polls"
        )
        assert await _starts(out) == before, "a paused schedule started a run"
        by_hand = await client.create_flow_run_from_deployment(deployment_id)
        assert (await wait_for_state(client.store, by_hand.id)).state.type == StateType.COMPLETED
        await client.set_deployment_paused(deployment_id, False)
        await eventually(lambda: _starts(out), lambda n: n >= before + 2, what="resumed runs")


async def _starts(out: Path) -> int:
    try:
        return out.read_text().count("start ")
    except FileNotFoundError:
        return 0


async def _active(client: HeadraceClient, deployment_id: UUID) -> int:
    runs = await client.read_flow_runs(deployment_id=deployment_id, states=["PENDING", "RUNNING"])
    return len(runs)


async def _polls(runner: Runner) -> int:
    assert runner._session is not None
    return runner._session.liveness.polls

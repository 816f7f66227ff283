"""The store's task runs and task cache, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import NewFlowRun
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord, SQLStore
from headrace.store.tables import task_runs
from headrace.task_runs import TASK_CACHE_ENTRIES_PER_JOB, TaskCacheEntry, TaskRun
from tests.integration.test_store import queue_runs, spec


def task_run(flow_run_id: UUID, name: str, state: StateType, **fields: object) -> TaskRun:
    values: dict[str, object] = {
        "id": uuid4(),
        "flow_run_id": flow_run_id,
        "name": name,
        "task_name": name.rsplit("-", 1)[0],
        "state": State(type=state),
        "run_count": 1,
        "start_time": utcnow(),
        **fields,
    }
    return TaskRun.model_validate(values)


def test_task_runs_are_replaced_by_id_and_listed_per_run(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    first, second = queue_runs(store, deployment.id, 2)
    running = task_run(first, "fetch-0", StateType.RUNNING)
    store.write_task_runs([running, task_run(second, "fetch-0", StateType.COMPLETED)])
    done = running.model_copy(update={"state": State(type=StateType.COMPLETED), "run_count": 2})
    assert store.write_task_runs([done, task_run(uuid4(), "lost-0", StateType.RUNNING)]) == 1
    [stored] = store.read_task_runs(first)
    assert (stored.id, stored.state.type, stored.run_count) == (running.id, StateType.COMPLETED, 2)
    with pytest.raises(ObjectNotFound):
        store.read_task_runs(uuid4())
    store.set_state(first, State(type=StateType.CANCELLED))
    store.delete_flow_run(first)
    with store.engine.connect() as conn:
        left = conn.execute(sa.select(task_runs.c.flow_run_id)).scalars().all()
    assert left == [second]  # the deleted run's task runs went with it


def test_the_task_cache_keeps_live_entries_per_deployment(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    scope, now = str(deployment.id), utcnow()
    store.write_task_cache(
        [
            TaskCacheEntry(scope=scope, key="a", result={"n": 1}),
            TaskCacheEntry(scope=scope, key="old", result=1, expires=now - timedelta(seconds=1)),
            TaskCacheEntry(scope="flow:other", key="a", result=2),
        ],
        now,
    )
    store.write_task_cache([TaskCacheEntry(scope=scope, key="a", result=[3])], now)
    assert store.read_task_cache(scope, now) == {"a": ([3], None)}
    store.write_task_cache(
        [TaskCacheEntry(scope=scope, key=str(n), result=n) for n in range(1500)], now
    )
    assert len(store.read_task_cache(scope, now)) == TASK_CACHE_ENTRIES_PER_JOB
    store.delete_deployment(deployment.id)
    assert store.read_task_cache(scope, now) == {}
    assert store.read_task_cache("flow:other", now) == {"a": (2, None)}


def test_an_ended_attempt_crashes_its_open_task_runs_and_subflow_runs(store: SQLStore) -> None:
    runner = RunnerRecord(name="here")
    store.register_runner(runner)
    deployment = store.upsert_deployment(spec())
    [run_id] = queue_runs(store, deployment.id, 1)
    store.claim_flow_run(run_id, runner)
    store.set_state(run_id, State(type=StateType.RUNNING))
    done = task_run(run_id, "fetch-0", StateType.COMPLETED)
    store.write_task_runs([done, task_run(run_id, "fetch-1", StateType.RUNNING)])
    child = subflow_run(store, run_id, runner)
    waiting = State(type=StateType.SCHEDULED, name="AwaitingRetry")
    store.set_state(child, waiting, expected_start_time=utcnow() + timedelta(minutes=1))
    grandchild = subflow_run(store, child, runner)
    with pytest.raises(InvalidStateTransition, match="subflow"):
        store.claim_flow_run(child, runner)
    other = NewFlowRun(flow_name="etl", deployment_id=deployment.id, parent_flow_run_id=run_id)
    [(started_by_it, _)] = store.create_flow_runs([other])  # run_deployment: a run of its own

    store.set_state(run_id, State(type=StateType.SCHEDULED, name="AwaitingRetry"))
    assert {t.name: t.state.type for t in store.read_task_runs(run_id)} == {
        "fetch-0": StateType.COMPLETED,
        "fetch-1": StateType.CRASHED,
    }
    ended = store.read_flow_run(child).state
    assert ended.type == StateType.CRASHED, ended
    assert ended.message and ended.message.startswith("Its parent flow run ")
    assert store.read_flow_run(grandchild).state.type == StateType.CRASHED
    assert store.read_flow_run(started_by_it.id).state.type == StateType.SCHEDULED


def subflow_run(store: SQLStore, parent: UUID, runner: RunnerRecord) -> UUID:
    new = NewFlowRun(flow_name="child", parent_flow_run_id=parent, runner_id=runner.id)
    return store.create_child_flow_run(new, flow_run_id=uuid4(), started=utcnow()).id

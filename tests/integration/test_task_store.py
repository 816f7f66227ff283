"""The store's task runs and task cache, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from headrace.exceptions import ObjectNotFound
from headrace.states import State, StateType, utcnow
from headrace.store import SQLStore
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

"""Retention on SQLite and PostgreSQL: deleting runs that ended before a cutoff, with all
that refers to them, in batches; by a runner in the background while triggers succeed."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

import pytest
import sqlalchemy as sa

from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import SQLStore
from headrace.store.admin import PRUNE_LOCK
from headrace.store.tables import FLOW_RUN_DEPENDENTS, flow_runs, logs
from tests.flows import basic
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.test_store import queue_runs, spec

pytestmark = pytest.mark.timeout(90)

LOGS_PER_RUN = 2


def seed_ended_runs(
    store: SQLStore,
    ends: Sequence[datetime],
    *,
    logs_per_run: int = LOGS_PER_RUN,
    state: StateType = StateType.COMPLETED,
) -> list[UUID]:
    """Ended runs inserted in bulk, one per end time, each with log lines (and, from the
    database's trigger, its state)."""
    ids = [uuid.uuid4() for _ in ends]
    runs = [
        {
            "id": run_id, "name": f"old-{i}", "flow_name": "etl", "parameters": {},
            "idempotency_scope": "flow:etl", "state_type": state.value,
            "state_name": state.value.title(), "state_timestamp": end,
            "expected_start_time": end, "start_time": end, "end_time": end,
            "run_count": 1, "created": end, "updated": end,
        }
        for i, (run_id, end) in enumerate(zip(ids, ends, strict=True))
    ]  # fmt: skip
    lines = [
        {"flow_run_id": run_id, "level": 20, "message": f"line {n}", "timestamp": end}
        for run_id, end in zip(ids, ends, strict=True)
        for n in range(logs_per_run)
    ]
    with store.engine.begin() as conn:
        conn.execute(flow_runs.insert(), runs)
        if lines:
            conn.execute(logs.insert(), lines)
    return ids


def count_runs(store: SQLStore) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(flow_runs)).scalar_one())


def test_pruning_deletes_only_runs_ended_before_the_cutoff_with_their_logs_and_states(
    store: SQLStore,
) -> None:
    now = utcnow()
    old = seed_ended_runs(store, [now - timedelta(days=40, minutes=i) for i in range(7)])
    (old_failed,) = seed_ended_runs(store, [now - timedelta(days=50)], state=StateType.FAILED)
    (recent,) = seed_ended_runs(store, [now - timedelta(days=2)])
    deployment = store.upsert_deployment(spec())
    queued, running = queue_runs(store, deployment.id, 2)
    store.set_state(running, State(type=StateType.PENDING))
    cutoff = now - timedelta(days=30)

    counted = store.count_prunable(cutoff)
    assert counted.runs == 8
    assert counted.dependents == {
        "logs": 8 * LOGS_PER_RUN,
        "flow_run_states": 8,
        "notification_deliveries": 0,
        "task_runs": 0,
    }

    first = store.prune_flow_runs(cutoff, limit=5)
    assert (first.runs, first.busy) == (5, False)
    assert first.dependents == {
        "logs": 5 * LOGS_PER_RUN,
        "flow_run_states": 5,
        "notification_deliveries": 0,
        "task_runs": 0,
    }
    rest = store.prune_flow_runs(cutoff, limit=5)
    assert rest.runs == 3  # fewer than the limit: nothing left
    assert store.prune_flow_runs(cutoff, limit=5).runs == 0
    assert store.count_prunable(cutoff).runs == 0

    remaining = {run.id for run in store.read_flow_runs(limit=100)}
    assert remaining == {recent, queued, running}
    for gone in [*old, old_failed]:
        assert store.read_logs(gone) == []
        assert store.read_state_history(gone) == []
    assert len(store.read_logs(recent)) == LOGS_PER_RUN


def test_every_table_that_refers_to_runs_is_pruned_with_them(store: SQLStore) -> None:
    """The migrated database's foreign keys to ``flow_runs``, all in FLOW_RUN_DEPENDENTS."""
    listed = {(column.table.name, column.name) for column in FLOW_RUN_DEPENDENTS}
    with store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        referring = {
            (table, column)
            for table in inspector.get_table_names()
            if table != "flow_runs"  # a run's own parent is a run, deleted by run
            for key in inspector.get_foreign_keys(table)
            if key["referred_table"] == "flow_runs"
            for column in key["constrained_columns"]
        }
    assert referring, "logs and states refer to runs"
    assert referring <= listed, f"not deleted with their runs: {referring - listed}"


def test_a_deleted_run_takes_its_logs_and_states_through_the_same_place(
    store: SQLStore,
) -> None:
    (run_id,) = seed_ended_runs(store, [utcnow()])
    store.delete_flow_run(run_id)
    assert store.read_logs(run_id) == []
    assert count_runs(store) == 0


@pytest.mark.postgres
def test_on_postgresql_one_pruner_at_a_time(postgres_url: str) -> None:
    store = SQLStore(postgres_url)
    try:
        seed_ended_runs(store, [utcnow() - timedelta(days=9)] * 3)
        cutoff = utcnow() - timedelta(days=1)
        with store.engine.connect() as other, other.begin():
            other.execute(sa.select(sa.func.pg_advisory_xact_lock(PRUNE_LOCK)))
            busy = store.prune_flow_runs(cutoff)
            assert busy.busy and busy.runs == 0
        assert count_runs(store) == 3
        assert store.prune_flow_runs(cutoff).runs == 3
    finally:
        store.close()


async def test_a_runner_prunes_in_the_background_while_triggers_succeed(
    settings: Settings,
) -> None:
    seeded = SQLStore(settings.resolved_database_url)
    old = [utcnow() - timedelta(days=40, seconds=i) for i in range(600)]
    kept = seed_ended_runs(seeded, [utcnow() - timedelta(days=1)])
    seed_ended_runs(seeded, old)
    seeded.close()
    settings = settings.model_copy(update={"retention_days": 30})
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add, "adder")
    async with running(runner), get_client(settings) as client:
        triggered = []
        for x in range(5):
            run = await client.create_flow_run_from_deployment(deployment_id, {"x": x})
            triggered.append(run.id)
        for x, run_id in enumerate(triggered):
            done = await wait_for_state(client.store, run_id)
            assert (done.state.type, done.result) == (StateType.COMPLETED, x + 1)

        async def left() -> int:
            return len(await client.store.read_flow_runs(limit=2000))

        await eventually(
            left, lambda n: n == len(triggered) + 1, timeout=60, what="old runs to be deleted"
        )
        assert (await client.store.read_flow_run(kept[0])).state.type == StateType.COMPLETED
        session = runner._session
        assert session is not None and session.pruner is not None
        assert session.pruner.pruned.runs == len(old)

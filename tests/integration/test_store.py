"""The SQL store against real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from headrace.deployments import DeploymentSpec
from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import LogRecord, NewFlowRun
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord, SQLStore
from headrace.store.migrate import current_revision, head_revision
from headrace.store.records import Attempt

T = TypeVar("T")


def spec(name: str = "default", flow_name: str = "etl", **overrides: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"name": name, "flow_name": flow_name, **overrides})


def queue_runs(store: SQLStore, deployment_id: UUID, count: int) -> list[UUID]:
    news = [NewFlowRun(flow_name="etl", deployment_id=deployment_id) for _ in range(count)]
    return [run.id for run, _ in store.create_flow_runs(news)]


def test_migrations_bring_an_empty_database_to_head(database_url: str) -> None:
    store = SQLStore(database_url)
    with store.engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        tables = set(sa.inspect(conn).get_table_names())
    assert {"deployments", "flow_runs", "flow_run_states", "logs", "runners"} <= tables
    SQLStore(database_url).close()  # a second open is a no-op, not an error
    store.close()


def test_sqlite_uses_wal_and_foreign_keys(tmp_path: object) -> None:
    store = SQLStore(f"sqlite:///{tmp_path}/x/h.db")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    store.close()


def test_deployment_upsert_keeps_id_and_updates_fields(store: SQLStore) -> None:
    first = store.upsert_deployment(spec(parameters={"x": 1}, tags=["a"]))
    second = store.upsert_deployment(spec(parameters={"x": 2}, description="new"))
    assert second.id == first.id
    assert second.parameters == {"x": 2}
    assert second.description == "new"
    assert second.created == first.created
    assert second.updated >= first.updated
    other = store.upsert_deployment(spec(name="other"))
    assert other.id != first.id
    assert [d.name for d in store.read_deployments()] == ["default", "other"]
    assert store.read_deployment_by_name("etl", "other").id == other.id


def test_unknown_ids_raise_object_not_found(store: SQLStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.read_deployment(uuid4())
    with pytest.raises(ObjectNotFound):
        store.read_flow_run(uuid4())
    with pytest.raises(ObjectNotFound):
        store.set_state(uuid4(), State(type=StateType.PENDING))


def test_created_run_is_scheduled_with_history(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    run, created = store.create_flow_run(
        NewFlowRun(flow_name="etl", deployment_id=deployment.id, parameters={"d": "2026-01-31"})
    )
    assert created
    assert run.state.type == StateType.SCHEDULED
    assert run.name.count("-") == 1
    stored = store.read_flow_run(run.id)
    assert stored.parameters == {"d": "2026-01-31"}
    assert stored.created.tzinfo is not None
    assert [s.type for s in store.read_state_history(run.id)] == [StateType.SCHEDULED]


def test_idempotency_key_returns_the_existing_run(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    new = NewFlowRun(flow_name="etl", deployment_id=deployment.id, idempotency_key="k1")
    first, created_first = store.create_flow_run(new)
    again, created_again = store.create_flow_run(new)
    assert created_first and not created_again
    assert again.id == first.id
    other = store.upsert_deployment(spec(name="other"))
    elsewhere, created = store.create_flow_run(new.model_copy(update={"deployment_id": other.id}))
    assert created and elsewhere.id != first.id  # keys are unique per deployment


def test_concurrent_identical_keys_make_one_run(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    new = NewFlowRun(flow_name="etl", deployment_id=deployment.id, idempotency_key="same")
    ids: list[UUID] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        ids.append(store.create_flow_run(new)[0].id)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert len(store.read_flow_runs(deployment_id=deployment.id)) == 1


def test_state_rules_are_enforced_in_the_store(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    with pytest.raises(InvalidStateTransition):
        store.set_state(run_id, State(type=StateType.RUNNING))  # PENDING only from SCHEDULED
    runner = RunnerRecord(name="r")
    store.register_runner(runner)
    (claimed,) = store.claim_runs(deployment_ids=[deployment.id], runner=runner, limit=5)
    assert claimed.state.type == StateType.PENDING and claimed.run_count == 1
    running = store.set_state(run_id, State(type=StateType.RUNNING), pid=123)
    assert running.start_time is not None and running.pid == 123
    done = store.set_state(run_id, State(type=StateType.COMPLETED), result={"rows": 3})
    assert done.end_time is not None and done.result == {"rows": 3}
    with pytest.raises(InvalidStateTransition, match="already ended"):
        store.set_state(run_id, State(type=StateType.RUNNING))
    history = [s.type for s in store.read_state_history(run_id)]
    assert history == [
        StateType.SCHEDULED,
        StateType.PENDING,
        StateType.RUNNING,
        StateType.COMPLETED,
    ]


def test_expected_state_guards_a_compare_and_set(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    with pytest.raises(InvalidStateTransition, match="not PENDING"):
        store.set_state(run_id, State(type=StateType.CANCELLED), expected=[StateType.PENDING])
    assert store.read_flow_run(run_id).state.type == StateType.SCHEDULED


def test_claim_takes_due_runs_oldest_first_up_to_limit(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    later = store.create_flow_run(
        NewFlowRun(
            flow_name="etl",
            deployment_id=deployment.id,
            expected_start_time=utcnow() + timedelta(hours=1),
        )
    )[0]
    ids = queue_runs(store, deployment.id, 5)
    runner = RunnerRecord(name="r")
    first = store.claim_runs(deployment_ids=[deployment.id], runner=runner, limit=3)
    assert [r.id for r in first] == ids[:3]
    rest = store.claim_runs(deployment_ids=[deployment.id], runner=runner, limit=10)
    assert [r.id for r in rest] == ids[3:]
    assert store.read_flow_run(later.id).state.type == StateType.SCHEDULED
    assert store.claim_runs(deployment_ids=[uuid4()], runner=runner, limit=10) == []


def test_claim_takes_only_the_given_deployments_runs_however_many_are_served(
    store: SQLStore,
) -> None:
    mine, other = (store.upsert_deployment(spec(name=name)) for name in ("mine", "other"))
    other_ids = queue_runs(store, other.id, 2)
    mine_ids = queue_runs(store, mine.id, 2)
    runner = RunnerRecord(name="r")
    served = [uuid4() for _ in range(300)] + [mine.id]  # a runner serving many deployments
    claimed = store.claim_runs(deployment_ids=served, runner=runner, limit=10)
    assert [r.id for r in claimed] == mine_ids
    both = store.claim_runs(deployment_ids=[other.id, mine.id], runner=runner, limit=10)
    assert [r.id for r in both] == other_ids


def test_claim_respects_a_deployment_concurrency_limit(store: SQLStore) -> None:
    limited = store.upsert_deployment(spec(name="limited", concurrency_limit=2))
    free = store.upsert_deployment(spec(name="free"))
    queue_runs(store, limited.id, 5)
    queue_runs(store, free.id, 2)
    runner = RunnerRecord(name="r")
    claimed = store.claim_runs(
        deployment_ids=[limited.id, free.id],
        runner=runner,
        limit=10,
        concurrency_limits={limited.id: 2},
    )
    by_deployment = [r.deployment_id for r in claimed]
    assert by_deployment.count(limited.id) == 2 and by_deployment.count(free.id) == 2
    again = store.claim_runs(
        deployment_ids=[limited.id], runner=runner, limit=10, concurrency_limits={limited.id: 2}
    )
    assert again == []
    assert store.count_active_runs([limited.id]) == {limited.id: 2}


def test_ad_hoc_runs_are_claimed_only_by_their_runner(store: SQLStore) -> None:
    alpha, twin = RunnerRecord(name="alpha"), RunnerRecord(name="alpha")
    run, _ = store.create_flow_run(NewFlowRun(flow_name="f", runner_id=alpha.id))
    unaddressed, _ = store.create_flow_run(NewFlowRun(flow_name="f"))
    assert store.count_queued_runs([], alpha.id, cap=10) == 1
    assert store.claim_runs(deployment_ids=[], runner=RunnerRecord(name="beta"), limit=5) == []
    assert store.claim_runs(deployment_ids=[], runner=twin, limit=5) == []  # the id decides
    (claimed,) = store.claim_runs(deployment_ids=[], runner=alpha, limit=5)
    assert claimed.id == run.id
    assert store.count_queued_runs([], alpha.id, cap=10) == 0
    assert store.claim_flow_run(unaddressed.id, twin).runner_id == twin.id  # only when asked


def _claim_all(
    url: str,
    deployment_id: str,
    out: multiprocessing.Queue[list[str]],
    start: threading.Barrier,
) -> None:
    store = SQLStore(url, migrate=False)
    runner = RunnerRecord(name=f"claimer-{uuid4().hex[:6]}")
    won: list[str] = []
    start.wait(timeout=60)  # every claimer is connected before any claims
    while True:
        claimed = store.claim_runs(deployment_ids=[UUID(deployment_id)], runner=runner, limit=3)
        if not claimed:
            break
        won.extend(str(r.id) for r in claimed)
        time.sleep(0.002)  # a runner does work between claims; it lets the others in
    store.close()
    out.put(won)


def test_concurrent_claimers_in_separate_processes_never_share_a_run(
    store: SQLStore, database_url: str
) -> None:
    deployment = store.upsert_deployment(spec())
    ids = {str(i) for i in queue_runs(store, deployment.id, 300)}
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[list[str]] = context.Queue()
    start = context.Barrier(4)
    workers = [
        context.Process(target=_claim_all, args=(database_url, str(deployment.id), out, start))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    results = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    claimed = [run_id for won in results for run_id in won]
    assert len(claimed) == len(set(claimed)) == 300
    assert set(claimed) == ids
    assert sum(1 for won in results if won) >= 2  # they really competed
    runs = store.read_flow_runs(deployment_id=deployment.id, limit=1000)
    assert {r.run_count for r in runs} == {1}


def test_cancellation_of_scheduled_and_running_runs(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    scheduled_id, running_id = queue_runs(store, deployment.id, 2)
    assert store.request_cancellation(scheduled_id).state.type == StateType.CANCELLED
    runner = RunnerRecord(name="r")
    (claimed,) = store.claim_runs(deployment_ids=[deployment.id], runner=runner, limit=5)
    assert claimed.id == running_id
    store.set_state(running_id, State(type=StateType.RUNNING))
    assert store.request_cancellation(running_id).state.type == StateType.CANCELLING
    assert store.request_cancellation(running_id).state.type == StateType.CANCELLING
    store.set_state(running_id, State(type=StateType.CANCELLED))
    with pytest.raises(InvalidStateTransition, match="already ended"):
        store.request_cancellation(running_id)


def all_at_once(
    database_url: str, count: int, call: Callable[[SQLStore], T]
) -> tuple[list[T], list[BaseException]]:
    """``call`` on ``count`` stores of their own (runners, say), released together."""
    stores = [SQLStore(database_url) for _ in range(count)]
    results: list[T] = []
    errors: list[BaseException] = []
    gate = threading.Barrier(count)

    def one(store: SQLStore) -> None:
        gate.wait()
        try:
            results.append(call(store))
        except BaseException as exc:  # pragma: no cover - what the tests look for
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.close()
    return results, errors


def test_runners_planning_the_same_runs_at_once_create_each_once(
    store: SQLStore, database_url: str
) -> None:
    deployment = store.upsert_deployment(spec())
    start = utcnow()
    planned = [
        NewFlowRun(
            flow_name="etl",
            deployment_id=deployment.id,
            idempotency_key=f"scheduled:k:{(start + timedelta(minutes=i)).isoformat()}",
            expected_start_time=start + timedelta(minutes=i),
        )
        for i in range(20)
    ]
    created, errors = all_at_once(database_url, 3, lambda other: other.create_planned_runs(planned))
    assert errors == []
    assert sum(created) == 20
    assert len(store.read_flow_runs(deployment_id=deployment.id)) == 20
    assert store.create_planned_runs(planned) == 0


def test_runners_registering_one_new_deployment_at_once_share_it(
    store: SQLStore, database_url: str
) -> None:
    for name in (uuid4().hex for _ in range(5)):

        def register(other: SQLStore, name: str = name) -> UUID:
            return other.upsert_deployment(spec(name)).id

        ids, errors = all_at_once(database_url, 4, register)
        assert errors == []
        assert len(ids) == 4 and len(set(ids)) == 1


def test_a_state_write_for_an_attempt_taken_over_is_refused(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    first, second = RunnerRecord(name="first"), RunnerRecord(name="second")
    (claimed,) = store.claim_runs(deployment_ids=[deployment.id], runner=first, limit=1)
    mine = Attempt(first.id, claimed.run_count)
    store.set_state(run_id, State(type=StateType.RUNNING), attempt=mine)
    # The first runner is presumed dead: its run is rescheduled and claimed by another.
    store.set_state(run_id, State(type=StateType.SCHEDULED, name="Rescheduled"))
    store.claim_runs(deployment_ids=[deployment.id], runner=second, limit=1)
    store.set_state(run_id, State(type=StateType.RUNNING))
    assert store.taken_among([run_id], first.id) == [run_id]
    assert store.taken_among([run_id], second.id) == []
    with pytest.raises(InvalidStateTransition, match="no longer attempt 1"):
        store.set_state(run_id, State(type=StateType.COMPLETED), attempt=mine)
    current = store.read_flow_run(run_id)
    assert current.state.type == StateType.RUNNING and current.run_count == 2
    done = store.set_state(run_id, State(type=StateType.COMPLETED), attempt=Attempt(second.id, 2))
    assert done.state.type == StateType.COMPLETED


def test_cancelling_a_run_waiting_to_retry_says_it_had_run(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    store.claim_runs(deployment_ids=[deployment.id], runner=RunnerRecord(name="r"), limit=1)
    store.set_state(run_id, State(type=StateType.SCHEDULED, name="AwaitingRetry"))
    cancelled = store.request_cancellation(run_id)
    assert cancelled.state.type == StateType.CANCELLED
    assert cancelled.state.message == "Cancelled while waiting to run again"


def test_logs_are_kept_in_order_and_paged(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    now = utcnow()
    store.write_logs(
        [
            LogRecord(flow_run_id=run_id, level=20, message=f"line {i}", timestamp=now)
            for i in range(5)
        ]
    )
    lines = store.read_logs(run_id)
    assert [line.message for line in lines] == [f"line {i}" for i in range(5)]
    assert [line.message for line in store.read_logs(run_id, after_id=lines[2].id)] == [
        "line 3",
        "line 4",
    ]


def test_active_runs_come_with_their_runner(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    queue_runs(store, deployment.id, 2)
    runner = RunnerRecord(name="r", pid=424242)
    store.register_runner(runner)
    store.claim_runs(deployment_ids=[deployment.id], runner=runner, limit=1)
    ((run, owner),) = store.read_active_runs([deployment.id])
    assert run.state.type == StateType.PENDING
    assert owner is not None and owner.id == runner.id and owner.pid == 424242
    store.heartbeat(runner.id, stopped=True)
    ((_, owner),) = store.read_active_runs([deployment.id])
    assert owner is not None and owner.stopped is not None


def test_listing_filters_by_deployment_and_state(store: SQLStore) -> None:
    a = store.upsert_deployment(spec(name="a"))
    b = store.upsert_deployment(spec(name="b"))
    a_ids = queue_runs(store, a.id, 3)
    queue_runs(store, b.id, 2)
    store.request_cancellation(a_ids[0])
    assert len(store.read_flow_runs(deployment_id=a.id)) == 3
    assert [r.id for r in store.read_flow_runs(states=[StateType.CANCELLED])] == [a_ids[0]]
    assert len(store.read_flow_runs(limit=2)) == 2
    assert len(store.read_flow_runs(offset=4)) == 1
    assert store.count_queued_runs([a.id, b.id], None, cap=3) == 3


def test_the_claim_query_uses_an_index_on_sqlite(tmp_path: object) -> None:
    store = SQLStore(f"sqlite:///{tmp_path}/plan.db")
    deployment = store.upsert_deployment(spec())
    plan = " ".join(store.explain_queue_query([deployment.id], uuid4()))
    assert "USING INDEX" in plan and "SCAN flow_runs" not in plan
    store.close()


def test_runs_planned_for_later_are_not_a_backlog(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    queue_runs(store, deployment.id, 2)
    store.create_flow_run(
        NewFlowRun(
            flow_name="etl",
            deployment_id=deployment.id,
            expected_start_time=utcnow() + timedelta(minutes=5),
        )
    )
    assert store.count_queued_runs([deployment.id], None, cap=100) == 2


def test_the_recorded_head_revision_is_alembics_head(store: SQLStore) -> None:
    from headrace.store.migrate import HEAD_REVISION, stored_revision

    assert head_revision() == HEAD_REVISION
    with store.engine.connect() as conn:
        assert stored_revision(conn) == HEAD_REVISION


def test_a_batch_with_a_repeated_key_creates_one_run(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    new = NewFlowRun(flow_name="etl", deployment_id=deployment.id, idempotency_key="twice")
    plain = NewFlowRun(flow_name="etl", deployment_id=deployment.id)
    (first, made_first), (second, made_second), (_, made_plain) = store.create_flow_runs(
        [new, new, plain]
    )
    assert made_first and not made_second and made_plain
    assert second.id == first.id
    assert len(store.read_flow_runs(deployment_id=deployment.id)) == 2
    assert [s.type for s in store.read_state_history(first.id)] == [StateType.SCHEDULED]


def test_postgres_bookkeeping_takes_one_thread_and_never_holds_up_callers(
    postgres_url: str,
) -> None:
    """Claims and bookkeeping queue on one thread; what a caller waits on has the pool."""
    from headrace.store.async_store import AsyncStore
    from headrace.store.threads import BACKGROUND, DISPATCH

    store = AsyncStore(SQLStore(postgres_url))
    gate = threading.Event()
    lock = threading.Lock()
    running = peak = 0

    def bookkeeping() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(10)
        with lock:
            running -= 1

    try:
        queued = [store._submit(bookkeeping, p) for p in (BACKGROUND, DISPATCH, BACKGROUND)]
        answered = store._submit(lambda: store.sync.read_deployments())
        assert answered.result(timeout=10) == []  # not behind the stuck bookkeeping
        gate.set()
        for future in queued:
            future.result(timeout=10)
    finally:
        gate.set()
        store.close()
    assert peak == 1


def test_the_database_keeps_the_history_of_every_state_write(store: SQLStore) -> None:
    """The history is written by the database, so a write from outside the store is kept too."""
    from headrace.store.tables import flow_runs

    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    store.claim_runs(deployment_ids=[deployment.id], runner=RunnerRecord(name="r"), limit=1)
    store.set_state(run_id, State(type=StateType.RUNNING))
    with store.engine.begin() as conn:  # an operator's own UPDATE, not headrace's
        conn.execute(
            flow_runs.update()
            .where(flow_runs.c.id == run_id)
            .values(state_type="CRASHED", state_name="Crashed", state_timestamp=utcnow())
        )
    history = store.read_state_history(run_id)
    assert [s.type for s in history] == [
        StateType.SCHEDULED,
        StateType.PENDING,
        StateType.RUNNING,
        StateType.CRASHED,
    ]
    assert history == sorted(history, key=lambda s: s.timestamp)


def test_the_history_migration_goes_down_and_up_again(database_url: str) -> None:
    from alembic import command

    from headrace.store.migrate import _config

    store = SQLStore(database_url)
    deployment = store.upsert_deployment(spec())
    try:
        with store.engine.begin() as conn:
            command.downgrade(_config(conn), "0002")  # type: ignore[arg-type]
        (before,) = queue_runs(store, deployment.id, 1)
        assert store.read_state_history(before) == []  # 0002 left the history to the store
        with store.engine.begin() as conn:
            command.upgrade(_config(conn), "head")  # type: ignore[arg-type]
            assert current_revision(conn) == head_revision()
        (after,) = queue_runs(store, deployment.id, 1)
        assert [s.type for s in store.read_state_history(after)] == [StateType.SCHEDULED]
    finally:
        store.close()


def test_cancelling_among_names_only_the_runs_asked_to_cancel(store: SQLStore) -> None:
    deployment = store.upsert_deployment(spec())
    ids = queue_runs(store, deployment.id, 3)
    store.claim_runs(deployment_ids=[deployment.id], runner=RunnerRecord(name="r"), limit=3)
    for run_id in ids:
        store.set_state(run_id, State(type=StateType.RUNNING))
    store.request_cancellation(ids[1])
    unknown = uuid4()
    assert store.cancelling_among([*ids, unknown]) == [ids[1]]
    assert store.cancelling_among([ids[0], ids[2]]) == []
    assert store.cancelling_among([]) == []

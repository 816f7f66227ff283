"""The dashboard's reads on SQLite and PostgreSQL: hourly counts, newest and next runs,
due runs, filtered pages of runs, deployments by name."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from headrace.deployments import DeploymentSpec
from headrace.flow_runs import NewFlowRun
from headrace.states import StateType, utcnow
from headrace.store import RunnerRecord, SQLStore
from headrace.store.dashboard import RunFilter
from headrace.store.tables import flow_runs


def _end(store: SQLStore, run_id: object, state: StateType, ended: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            flow_runs.update()
            .where(flow_runs.c.id == run_id)
            .values(
                state_type=state.value,
                state_name=state.value.capitalize(),
                start_time=ended - timedelta(seconds=3),  # type: ignore[operator]
                end_time=ended,
                created=ended - timedelta(seconds=5),  # type: ignore[operator]
            )
        )


def test_the_dashboard_reads(store: SQLStore) -> None:
    now = utcnow()
    b = store.upsert_deployment(DeploymentSpec(name="b", flow_name="etl", entrypoint="x:y"))
    a = store.upsert_deployment(DeploymentSpec(name="a", flow_name="etl", entrypoint="x:y"))
    later = now + timedelta(hours=1)
    made = store.create_flow_runs(
        [NewFlowRun(flow_name="etl", deployment_id=a.id) for _ in range(4)]
        + [NewFlowRun(flow_name="etl", deployment_id=b.id)]
        + [NewFlowRun(flow_name="etl", deployment_id=b.id, expected_start_time=later)]
    )
    runs = [run for run, _ in made]
    _end(store, runs[0].id, StateType.COMPLETED, now - timedelta(hours=3))
    _end(store, runs[1].id, StateType.FAILED, now - timedelta(hours=3))
    _end(store, runs[2].id, StateType.COMPLETED, now - timedelta(minutes=1))
    hour = (now - timedelta(hours=3)).strftime("%Y-%m-%d %H")
    counts = {(h, s): n for h, s, n in store.count_ended_by_hour(now - timedelta(days=1))}
    assert counts[(hour, StateType.COMPLETED)] == 1 and counts[(hour, StateType.FAILED)] == 1
    assert sum(counts.values()) == 3
    recent = store.count_ended_by_hour(now - timedelta(hours=1))
    assert [(s, n) for _, s, n in recent] == [(StateType.COMPLETED, 1)]
    assert [r.id for r in store.read_recent_failures()] == [runs[1].id]
    latest = store.read_latest_runs([a.id, b.id])
    assert latest[b.id].id == runs[5].id
    assert latest[a.id].id == runs[3].id
    assert store.read_next_run_times([b.id])[b.id] > now
    assert next(r.id for r in store.read_next_scheduled(1)) in {runs[3].id, runs[4].id}
    by_deployment, _ = store.count_due_runs()
    assert by_deployment == {a.id: 1, b.id: 1}
    failed = store.read_run_page(RunFilter(states=[StateType.FAILED]))
    assert [r.id for r in failed] == [runs[1].id]
    window = RunFilter(
        created_after=now - timedelta(hours=4), created_before=now - timedelta(hours=2)
    )
    assert {r.id for r in store.read_run_page(window)} == {runs[0].id, runs[1].id}
    first = store.read_run_page(RunFilter(deployment_id=a.id), limit=2)
    rest = store.read_run_page(
        RunFilter(deployment_id=a.id, older_than=(first[-1].created, first[-1].id))
    )
    assert [r.id for r in first + rest] == [
        r.id for r in store.read_run_page(RunFilter(deployment_id=a.id))
    ]
    assert len(rest) == 2
    assert [d.name for d in store.read_deployment_page()] == ["a", "b"]
    assert store.read_deployment_names() == {a.id: "etl/a", b.id: "etl/b"}
    briefs = store.read_run_briefs(a.id)
    assert len(briefs) == 4 and briefs[-1].state_type == StateType.COMPLETED
    record = RunnerRecord(name="r1")
    store.register_runner(record)
    store.heartbeat(record.id, serving=[a.id])
    assert store.read_served_deployment_ids() == {record.id: [a.id]}
    assert [r.name for r in store.read_runners()] == ["r1"]
    with store.engine.begin() as conn:
        conn.execute(
            flow_runs.update().where(flow_runs.c.id == runs[3].id)
            .values(state_type="RUNNING", runner_id=record.id)
        )  # fmt: skip
    assert store.count_running_by_runner() == {record.id: 1}
    changed, log_id = store.last_changes()
    assert changed is not None and changed <= utcnow() and log_id is None
    assert store.read_child_runs(runs[0].id) == []


def test_listing_runs_uses_an_index_on_postgres(postgres_url: str) -> None:
    store = SQLStore(postgres_url)
    try:
        deployment = store.upsert_deployment(DeploymentSpec(name="d", flow_name="f"))
        store.create_flow_runs(
            [NewFlowRun(flow_name="f", deployment_id=deployment.id) for _ in range(3000)]
        )
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE flow_runs"))
            plan = conn.execute(
                sa.text(
                    "EXPLAIN SELECT * FROM flow_runs WHERE deployment_id = :d "
                    "ORDER BY created DESC LIMIT 20"
                ),
                {"d": deployment.id},
            ).all()
    finally:
        store.close()
    text = "\n".join(row[0] for row in plan)
    assert "ix_flow_runs" in text and "Seq Scan" not in text, text

"""Store behaviours of schedules and the claim query, not covered elsewhere."""

from __future__ import annotations

from uuid import uuid4

import sqlalchemy as sa

from headrace.deployments import DeploymentSpec
from headrace.flow_runs import NewFlowRun
from headrace.runner.scheduling import plan_scheduled_runs
from headrace.schedules import construct_schedule
from headrace.store import AsyncStore, SQLStore

QUEUE_INDEX = "ix_flow_runs_queue"


def every_minute(name: str = "every") -> DeploymentSpec:
    schedule = construct_schedule(interval=60)
    assert schedule is not None
    return DeploymentSpec(name=name, flow_name="touch", schedules=[schedule], entrypoint="x:y")


async def test_removing_a_schedule_removes_its_future_runs(async_store: AsyncStore) -> None:
    deployment = await async_store.upsert_deployment(every_minute())
    assert await plan_scheduled_runs(async_store, [deployment]) > 0
    manual, _ = await async_store.create_flow_run(
        NewFlowRun(flow_name="touch", deployment_id=deployment.id)
    )
    unscheduled = await async_store.upsert_deployment(
        every_minute().model_copy(update={"schedules": []})
    )
    assert unscheduled.id == deployment.id
    assert await plan_scheduled_runs(async_store, [unscheduled]) == 0
    left = await async_store.read_flow_runs(deployment_id=deployment.id)
    assert [run.id for run in left] == [manual.id], "manual runs stay; planned ones go"


def test_the_claim_query_uses_the_queue_index_on_postgres(postgres_url: str) -> None:
    store = SQLStore(postgres_url)
    try:
        wanted = store.upsert_deployment(every_minute("wanted"))
        crowd = store.upsert_deployment(every_minute("crowd"))
        store.create_flow_runs(
            [NewFlowRun(flow_name="touch", deployment_id=crowd.id) for _ in range(5000)]
            + [NewFlowRun(flow_name="touch", deployment_id=wanted.id) for _ in range(10)]
        )
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE flow_runs"))
        plan = "\n".join(store.explain_queue_query([wanted.id], uuid4()))
    finally:
        store.close()
    assert "Seq Scan on flow_runs" not in plan, plan
    assert "ix_flow_runs" in plan, plan

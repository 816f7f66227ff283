"""The drain's plan: what a stopping runner does with each run in flight."""

from __future__ import annotations

import uuid

from headrace.deployments import OnShutdown
from headrace.flow_runs import FlowRun
from headrace.runner.drain import DrainPlan, plan_drain
from headrace.states import State, StateType, utcnow


def run(name: str) -> FlowRun:
    now = utcnow()
    return FlowRun(
        id=uuid.uuid4(),
        name=name,
        flow_name="f",
        state=State(type=StateType.RUNNING),
        created=now,
        updated=now,
    )


def test_each_run_goes_where_its_deployment_says() -> None:
    runs = [run("keep"), run("again"), run("stop"), run("keep too")]
    policies: dict[str, OnShutdown] = {"again": "requeue", "stop": "cancel"}
    plan = plan_drain(runs, lambda r: policies.get(r.name, "finish"))
    keep, again, stop, keep_too = (r.id for r in runs)
    assert plan == DrainPlan(cancel=[stop], requeue=[again], finish=[keep, keep_too])


def test_nothing_in_flight_plans_nothing() -> None:
    assert plan_drain([], lambda r: "cancel") == DrainPlan()

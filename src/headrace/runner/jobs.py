"""What the executor hands a run's process: its job, and the decision when it cannot start."""

from __future__ import annotations

from headrace.flow_runs import FlowRun
from headrace.process.protocol import ChildJob
from headrace.runner.journal import Entry
from headrace.runner.outcomes import Decision
from headrace.states import State, StateType


def job_for(
    run: FlowRun,
    entrypoint: str | None,
    journal: Entry | None,
    title: str,
    traceparent: str | None = None,
) -> ChildJob | None:
    """The job of ``run``'s process, or None when it has nothing to load."""
    target = entrypoint or run.entrypoint
    if not target:
        return None
    return ChildJob(
        flow_run_id=str(run.id),
        flow_run_name=run.name,
        entrypoint=target,
        parameters=dict(run.parameters),
        journal_path=None if journal is None else str(journal.segment),
        journal_key="" if journal is None else journal.key,
        run_count=run.run_count,
        deployment_id=None if run.deployment_id is None else str(run.deployment_id),
        scheduled_start_time=run.expected_start_time,
        last_attempt=run.attempts_left == 0,
        parent_flow_run_id=None if run.parent_flow_run_id is None else str(run.parent_flow_run_id),
        title=title or f"headrace run {run.flow_name} {run.name}",
        traceparent=traceparent,
    )


def crashed(message: str) -> Decision:
    """The decision for a run whose process never started."""
    return Decision(State(type=StateType.CRASHED, message=message))

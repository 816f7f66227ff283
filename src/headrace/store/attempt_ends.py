"""What ends with a run's attempt: its task runs and its subflows' runs still open.

However an attempt ends (its process exited, was killed or timed out, it was
cancelled, or a runner recovered it after its own runner died), the database
is told in the same transaction that nothing of it goes on: its task runs not
yet final are CRASHED, and the runs of the subflows it called that are still
open (running, or awaiting a retry its process would have started) end with
it. Written here, under the run's state change, no path can leave them open.
"""

from __future__ import annotations

import functools
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from headrace.states import TERMINAL_STATES, State, StateType, utcnow
from headrace.store.tables import flow_runs, task_runs

TASK_RUN_CRASHED = "Its flow run's process ended before this task run did"
FINAL = [s.value for s in TERMINAL_STATES]


@functools.cache
def _crash_task_runs() -> sa.Update:
    """Built once (building a statement costs more than running it on SQLite)."""
    crashed: sa.BindParameter[datetime] = sa.bindparam("crashed_at")
    return (
        task_runs.update()
        .where(
            (task_runs.c.flow_run_id == sa.bindparam("run_id"))
            & task_runs.c.state_type.not_in(FINAL)
        )
        .values(
            state_type=StateType.CRASHED.value,
            state_name="Crashed",
            state_message=TASK_RUN_CRASHED,
            state_timestamp=crashed,
            end_time=sa.func.coalesce(task_runs.c.end_time, crashed),
        )
    )


@functools.cache
def _open_subflow_runs() -> sa.Select[tuple[UUID, str]]:
    return sa.select(flow_runs.c.id, flow_runs.c.state_type).where(
        (flow_runs.c.parent_flow_run_id == sa.bindparam("run_id"))
        & flow_runs.c.deployment_id.is_(None)
        & flow_runs.c.state_type.not_in(FINAL)
    )


@functools.cache
def _crash_then_open_subflow_runs() -> sa.Select[tuple[UUID, str]]:
    """PostgreSQL: both in one statement, one round trip (the update as a CTE)."""
    return _open_subflow_runs().add_cte(_crash_task_runs().cte("crashed"))


def end_attempt_of(conn: sa.Connection, flow_run_id: UUID) -> list[tuple[UUID, StateType]]:
    """Crash the run's task runs not in a final state (one statement), and return the
    subflow runs it left open, with their states (a run started with ``run_deployment``
    is a run of its own: it goes on)."""
    params = {"run_id": flow_run_id, "crashed_at": utcnow()}
    if conn.dialect.name == "postgresql":
        rows = conn.execute(_crash_then_open_subflow_runs(), params).all()
    else:
        conn.execute(_crash_task_runs(), params)
        rows = conn.execute(_open_subflow_runs(), params).all()
    return [(row.id, StateType(row.state_type)) for row in rows]


def ended_with_parent(parent_name: str, parent: State, current: StateType) -> State:
    """The state of a subflow run open (in ``current``) when its parent's attempt ended as
    ``parent``: CANCELLED when either was being cancelled, else CRASHED."""
    cancelled = parent.type == StateType.CANCELLED or current == StateType.CANCELLING
    message = f"Its parent flow run {parent_name} ended ({parent.name}) before it finished"
    if parent.message:
        message = f"{message}: {parent.message}"
    return State(type=StateType.CANCELLED if cancelled else StateType.CRASHED, message=message)

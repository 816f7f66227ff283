"""Subflow runs: created already RUNNING by the runner executing their parent, then moved on.

A subflow runs inside its parent's process, so it is never queued nor claimed:
the runner records it as its process reports it (``runner/subflow_events.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from headrace.exceptions import InvalidStateTransition
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.states import State, StateType, utcnow
from headrace.store.connection import SQLBase
from headrace.store.rows import flow_run_from_row, idempotency_scope, new_run_values
from headrace.store.tables import flow_runs
from headrace.store.transitions import StateChanges


class ChildRuns(StateChanges, SQLBase):
    """Writes of the runs a parent run's process executes in itself."""

    def create_child_flow_run(
        self, new: NewFlowRun, *, flow_run_id: UUID, started: datetime, pid: int | None = None
    ) -> FlowRun:
        """Store a subflow run RUNNING since ``started`` (its first attempt), under the id its
        process chose; its ``parent_flow_run_id`` and runner come with ``new``."""
        values = new_run_values(new, idempotency_scope(new), utcnow())
        values.update(
            id=flow_run_id,
            state_type=StateType.RUNNING.value,
            state_name="Running",
            state_timestamp=started,
            expected_start_time=started,
            start_time=started,
            run_count=1,
            pid=pid,
        )
        with self._write() as conn:
            conn.execute(flow_runs.insert(), values)  # the database records it RUNNING
        return flow_run_from_row(values)

    def restart_child_flow_run(
        self, flow_run_id: UUID, run_count: int, started: datetime
    ) -> FlowRun:
        """A subflow run awaiting its retry starts attempt ``run_count``: PENDING, then RUNNING."""
        with self._write() as conn:
            pending = State(type=StateType.PENDING, timestamp=started)
            fields: dict[str, Any] = {"run_count": run_count}
            moved = self._apply_state(conn, flow_run_id, [StateType.SCHEDULED], pending, fields)
            if moved is None:
                raise InvalidStateTransition(f"Flow run {flow_run_id} is not awaiting a retry")
            running = State(type=StateType.RUNNING, timestamp=started)
            changed = self._apply_state(conn, flow_run_id, [StateType.PENDING], running, {})
            assert changed is not None  # the transaction holds the row
            return changed

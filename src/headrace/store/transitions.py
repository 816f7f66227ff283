"""State changes: compare-and-set on a run's state, one at a time or many in one transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa

import headrace.store.statements as statements
from headrace.exceptions import HeadraceError, InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import FlowRun
from headrace.states import (
    ACTIVE_STATES,
    State,
    StateType,
    cancellation_target,
    check_transition,
    sources_of,
    utcnow,
)
from headrace.store.attempt_ends import end_attempt_of, ended_with_parent
from headrace.store.connection import SQLBase
from headrace.store.records import Attempt, StateChange
from headrace.store.rows import flow_run_from_row, state_names, state_values
from headrace.store.tables import flow_run_states, flow_runs

RUN_FIELDS = frozenset(
    {
        "start_time",
        "end_time",
        "result",
        "result_truncated",
        "result_ref",
        "pid",
        "expected_start_time",
        "runner_id",
        "runner_name",
    }
)
"""Columns a state change may set beside the state itself."""


class StateChanges(SQLBase):
    """Every write of a run's state goes through here."""

    # -- state changes ------------------------------------------------------

    def set_state(
        self,
        flow_run_id: UUID,
        state: State,
        *,
        expected: Collection[StateType] | None = None,
        attempt: Attempt | None = None,
        **fields: Any,
    ) -> FlowRun:
        """Move a run to ``state`` if the rules (and ``expected``, when given) allow it.

        A compare-and-set on the current state: a concurrent change in between
        makes this raise ``InvalidStateTransition`` instead of overwriting it.
        With ``attempt``, only while the run is still that attempt of that runner.
        """
        change = StateChange(flow_run_id, state, expected, fields, attempt)
        with self._write() as conn:
            return self._set_state_in(conn, change)

    def set_states(self, changes: Sequence[StateChange]) -> list[FlowRun | HeadraceError]:
        """Several independent state changes in one transaction (group commit).

        Each change succeeds or fails on its own; a refused change leaves no
        trace, so its error is returned in its place instead of raised.
        """
        results: list[FlowRun | HeadraceError] = []
        with self._write() as conn:
            for change in changes:
                try:
                    results.append(self._set_state_in(conn, change))
                except (InvalidStateTransition, ObjectNotFound) as exc:
                    results.append(exc)
        return results

    def _set_state_in(self, conn: sa.Connection, change: StateChange) -> FlowRun:
        flow_run_id, state, expected, fields, attempt = change
        unknown = set(fields) - RUN_FIELDS
        if unknown:
            raise ValueError(f"set_state cannot set {sorted(unknown)}")
        sources = sources_of(state.type)
        if expected is not None:
            sources &= frozenset(expected)
        changed = self._apply_state(conn, flow_run_id, sources, state, fields, attempt)
        if changed is not None:
            return changed
        if attempt is not None and self._attempt_of(conn, flow_run_id) != attempt:
            raise InvalidStateTransition(
                f"Flow run {flow_run_id} is no longer attempt {attempt.run_count} of this runner"
            )
        current = self._current_state(conn, flow_run_id)
        if expected is not None and current not in expected:
            raise InvalidStateTransition(
                f"Flow run {flow_run_id} is {current.value}, not {state_names(expected)}"
            )
        check_transition(current, state.type)
        raise InvalidStateTransition(  # pragma: no cover - the CAS and the rules agree
            f"Flow run {flow_run_id} changed state concurrently"
        )

    def _apply_state(
        self,
        conn: sa.Connection,
        flow_run_id: UUID,
        sources: Collection[StateType],
        state: State,
        fields: dict[str, Any],
        attempt: Attempt | None = None,
    ) -> FlowRun | None:
        """The compare-and-set itself: None when the run was in none of ``sources``
        (or, with ``attempt``, is no longer that attempt).

        The database adds the new state to the run's history (migration 0003).
        """
        values = {**state_values(state), "updated": utcnow(), **fields}
        if state.type == StateType.RUNNING:
            values.setdefault("start_time", state.timestamp)
        if state.is_terminal:
            values.setdefault("end_time", state.timestamp)
        fieldset = frozenset(values) - frozenset(statements.STATE_COLUMNS)
        params = statements.update_state_params(
            flow_run_id, [s.value for s in sources], values, attempt
        )
        row = conn.execute(statements.update_state(fieldset, attempt is not None), params).first()
        if row is None:
            return None
        changed = flow_run_from_row(row._asdict())
        if state.type not in ACTIVE_STATES:
            self._end_attempt(conn, changed)
        return changed

    def _end_attempt(self, conn: sa.Connection, run: FlowRun) -> None:
        """The run's attempt is over (ended, or back to wait): so is all it was doing."""
        children = end_attempt_of(conn, run.id)
        for child_id, current in children:
            state = ended_with_parent(run.name, run.state, current)
            self._apply_state(conn, child_id, [current], state, {})

    def _attempt_of(self, conn: sa.Connection, flow_run_id: UUID) -> Attempt | None:
        row = conn.execute(
            sa.select(flow_runs.c.runner_id, flow_runs.c.run_count).where(
                flow_runs.c.id == flow_run_id
            )
        ).first()
        return None if row is None or row.runner_id is None else Attempt(*row)

    def request_cancellation(self, flow_run_id: UUID) -> FlowRun:
        """SCHEDULED runs are cancelled at once; started ones become CANCELLING for their runner."""
        with self._write() as conn:
            current = self._current_state(conn, flow_run_id)
            target = cancellation_target(current)
            if target is None:
                raise InvalidStateTransition(
                    f"Flow run {flow_run_id} has already ended ({current.value})"
                )
            if target == current:
                row = conn.execute(flow_runs.select().where(flow_runs.c.id == flow_run_id)).one()
                return flow_run_from_row(row._asdict())
            message = "Cancel requested"
            if target.is_terminal:  # it was waiting: for its first start, or to run again
                ran = conn.execute(
                    sa.select(flow_runs.c.run_count).where(flow_runs.c.id == flow_run_id)
                ).scalar()
                message = (
                    "Cancelled while waiting to run again" if ran else "Cancelled before it started"
                )
            state = State(type=target, message=message)
            changed = self._apply_state(conn, flow_run_id, [current], state, {})
            assert changed is not None  # the write lock / row lock holds the state still
            return changed

    def cancelling_among(self, ids: Collection[UUID]) -> list[UUID]:
        """Which of these runs have been asked to cancel: ids only, as a runner asks often."""
        if not ids:
            return []
        dialect = self.engine.dialect.name
        query = statements.cancelling_among(dialect)
        with self._read() as conn:
            rows = conn.execute(query, {"run_ids": statements.id_set_value(ids, dialect)})
            return [row[0] for row in rows]

    def cancel_asked_among(self, ids: Collection[UUID]) -> list[UUID]:
        """Which of these runs were asked to cancel: CANCELLING, or CANCELLED at once (a
        subflow's run awaiting its retry, whose process must still hear of it)."""
        if not ids:
            return []
        dialect = self.engine.dialect.name
        query = statements.cancel_asked_among(dialect)
        with self._read() as conn:
            rows = conn.execute(query, {"run_ids": statements.id_set_value(ids, dialect)})
            return [row[0] for row in rows]

    def taken_among(self, ids: Collection[UUID], runner_id: UUID) -> list[UUID]:
        """Which of these runs ``runner_id`` no longer holds: another runner took them over
        (it was presumed dead), or they ended or went back to the queue without it."""
        if not ids:
            return []
        dialect = self.engine.dialect.name
        params = {"run_ids": statements.id_set_value(ids, dialect), "runner_id": runner_id}
        with self._read() as conn:
            return [row[0] for row in conn.execute(statements.taken_among(dialect), params)]

    def read_state_history(self, flow_run_id: UUID) -> list[State]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(flow_run_states)
                .where(flow_run_states.c.flow_run_id == flow_run_id)
                .order_by(flow_run_states.c.id)
            ).all()
        return [
            State(type=row.type, name=row.name, message=row.message, timestamp=row.timestamp)
            for row in rows
        ]

"""Claiming: due SCHEDULED runs become PENDING for one runner, atomically, oldest first.

The dialects differ only here: PostgreSQL locks candidate rows with ``FOR
UPDATE SKIP LOCKED``; on SQLite ``BEGIN IMMEDIATE`` makes the claim one
exclusive step. Either way the update is a compare-and-set on SCHEDULED, so two
claimers never win the same run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

import headrace.store.statements as statements
from headrace.exceptions import InvalidStateTransition
from headrace.flow_runs import FlowRun
from headrace.states import ACTIVE_STATES, StateType, check_transition, utcnow
from headrace.store.connection import SQLBase
from headrace.store.records import RunnerRecord
from headrace.store.rows import Owner, as_utc, flow_run_from_row, lock_key, owned_by
from headrace.store.tables import flow_runs


class Claims(SQLBase):
    """Claim queries, and the counts that decide how much may be claimed."""

    # -- claiming -----------------------------------------------------------

    def claim_runs(
        self,
        *,
        deployment_ids: Collection[UUID],
        runner: RunnerRecord,
        limit: int,
        now: datetime | None = None,
        concurrency_limits: Mapping[UUID, int] | None = None,
    ) -> list[FlowRun]:
        """Atomically move up to ``limit`` due SCHEDULED runs to PENDING for ``runner``.

        Oldest first; runs of a deployment with a concurrency limit are taken
        only while that deployment has free slots. Two claimers never win the
        same run: the update is a compare-and-set on SCHEDULED.
        """
        if limit <= 0:
            return []
        now = now or utcnow()
        limits = dict(concurrency_limits or {})
        with self._write() as conn:
            candidates = self._claim_candidates(conn, deployment_ids, runner, limit, now, limits)
            return self._mark_claimed(conn, candidates[:limit], runner, now)

    def claim_flow_run(self, flow_run_id: UUID, runner: RunnerRecord) -> FlowRun:
        """Claim one particular SCHEDULED run, whatever its due time (never a subflow's run:
        its parent's process runs it)."""
        now = utcnow()
        with self._write() as conn:
            current = self._current_state(conn, flow_run_id)
            if self._is_subflow_run(conn, flow_run_id):
                raise InvalidStateTransition(
                    f"Flow run {flow_run_id} is a subflow's run: only its parent's process runs it"
                )
            check_transition(current, StateType.PENDING)
            (claimed,) = self._mark_claimed(conn, [flow_run_id], runner, now)
            return claimed

    @staticmethod
    def _is_subflow_run(conn: sa.Connection, flow_run_id: UUID) -> bool:
        row = conn.execute(
            sa.select(flow_runs.c.deployment_id, flow_runs.c.parent_flow_run_id).where(
                flow_runs.c.id == flow_run_id
            )
        ).one()
        return row.deployment_id is None and row.parent_flow_run_id is not None

    def next_due_time(
        self,
        deployment_ids: Collection[UUID],
        runner_id: UUID | None,
        after: datetime | None = None,
    ) -> datetime | None:
        """When the earliest queued run of these deployments (or this runner) is due.

        ``after``: only runs due later than this. Runs already due at a claim
        and still queued wait for a free slot, not for a time.
        """
        condition = (flow_runs.c.state_type == StateType.SCHEDULED.value) & owned_by(
            deployment_ids, runner_id
        )
        if after is not None:
            condition &= flow_runs.c.expected_start_time > after
        query = sa.select(sa.func.min(flow_runs.c.expected_start_time)).where(condition)
        with self._read() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else as_utc(value, self.engine.dialect)

    def _claim_candidates(
        self,
        conn: sa.Connection,
        deployment_ids: Collection[UUID],
        runner: RunnerRecord,
        limit: int,
        now: datetime,
        limits: dict[UUID, int],
    ) -> list[UUID]:
        free_ids = [d for d in deployment_ids if d not in limits]
        found = self._due(conn, (free_ids, runner.id), limit, now)
        limited = [d for d in deployment_ids if d in limits]
        if limited:
            if not self.is_sqlite:
                for deployment_id in sorted(limited):
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock_key(deployment_id))))
            active = self._active_counts(conn, limited)
            for deployment_id in limited:
                slots = min(limit, limits[deployment_id] - active.get(deployment_id, 0))
                if slots > 0:
                    found.extend(self._due(conn, ([deployment_id], None), slots, now))
        found.sort(key=lambda item: item[1])
        return [run_id for run_id, _ in found]

    def explain_queue_query(
        self, deployment_ids: Collection[UUID], runner_id: UUID | None
    ) -> list[str]:
        """The database's plan for the claim query: it must use the queue index."""
        dialect = self.engine.dialect.name
        query = statements.due_runs(
            by_deployment=bool(deployment_ids), by_runner=runner_id is not None, dialect=dialect
        )
        params = {
            "deployment_ids": statements.id_set_value(deployment_ids, dialect),
            "addressee": runner_id,
            "now": utcnow(),
            "limit": 8,
        }
        bound = query.params(**params)
        compiled = bound.compile(self.engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if self.is_sqlite else "EXPLAIN "
        with self._read() as conn:
            rows = conn.exec_driver_sql(prefix + str(compiled)).all()
        return [str(row[-1]) for row in rows]

    def _due(
        self, conn: sa.Connection, owned: Owner, limit: int, now: datetime
    ) -> list[tuple[UUID, datetime]]:
        ids, runner_id = owned
        if not ids and runner_id is None:
            return []
        dialect = self.engine.dialect.name
        query = statements.due_runs(
            by_deployment=bool(ids), by_runner=runner_id is not None, dialect=dialect
        )
        deployments = statements.id_set_value(ids, dialect)
        params = {"deployment_ids": deployments, "addressee": runner_id, "now": now}
        rows = conn.execute(query, {**params, "limit": limit})
        return [(row[0], row[1]) for row in rows]

    def _mark_claimed(
        self, conn: sa.Connection, run_ids: list[UUID], runner: RunnerRecord, now: datetime
    ) -> list[FlowRun]:
        if not run_ids:
            return []
        params = {
            "run_ids": run_ids,
            "now": now,
            "runner_id": runner.id,
            "new_runner_name": runner.name,
        }
        rows = conn.execute(statements.mark_claimed(), params).all()
        return sorted(
            (flow_run_from_row(row._asdict()) for row in rows),
            key=lambda run: (run.expected_start_time or now, run.created),
        )

    def count_queued_runs(
        self, deployment_ids: Collection[UUID], runner_id: UUID | None, *, cap: int
    ) -> int:
        """How many due runs wait in SCHEDULED for these deployments (or this runner), up to
        ``cap``; runs planned for later are not a backlog."""
        owned = owned_by(deployment_ids, runner_id)
        inner = (
            sa.select(flow_runs.c.id)
            .where(
                (flow_runs.c.state_type == StateType.SCHEDULED.value)
                & (flow_runs.c.expected_start_time <= utcnow())
                & owned
            )
            .limit(cap)
            .subquery()
        )
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one())

    def count_active_runs(self, deployment_ids: Collection[UUID]) -> dict[UUID, int]:
        """Runs currently PENDING, RUNNING or CANCELLING, per deployment."""
        with self._read() as conn:
            return self._active_counts(conn, deployment_ids)

    def _active_counts(
        self, conn: sa.Connection, deployment_ids: Collection[UUID]
    ) -> dict[UUID, int]:
        if not deployment_ids:
            return {}
        rows = conn.execute(
            sa.select(flow_runs.c.deployment_id, sa.func.count())
            .where(
                flow_runs.c.deployment_id.in_(list(deployment_ids))
                & flow_runs.c.state_type.in_([s.value for s in ACTIVE_STATES])
            )
            .group_by(flow_runs.c.deployment_id)
        ).all()
        return {row[0]: int(row[1]) for row in rows}

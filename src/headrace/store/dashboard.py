"""The dashboard's reads: small, bounded queries over the whole database, each on an index.

The dashboard shows every runner, deployment and run of the database, not only
those of the runner serving it, so these read across runners. Each returns at
most a page of rows (the hourly counts are grouped by the database).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from headrace.flow_runs import FlowRun
from headrace.states import TERMINAL_STATES, StateType
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE, RunnerRecord
from headrace.store.rows import flow_run_from_row
from headrace.store.tables import ACTIVE, deployments, flow_runs, runner_deployments, runners

FAILED = (StateType.FAILED.value, StateType.CRASHED.value)
# Written out, not bound: SQLite uses a partial index only for a condition it can match
# to the index's own, as written.
IS_ACTIVE = sa.text(f"flow_runs.state_type IN {ACTIVE}")
IS_QUEUED = sa.text("flow_runs.state_type = 'SCHEDULED'")


@dataclass(frozen=True)
class DeploymentSummary:
    """What a list of deployments shows, read without validating each deployment whole."""

    id: UUID
    name: str
    flow_name: str
    paused: bool
    schedules: list[dict[str, Any]]


@dataclass(frozen=True)
class RunFilter:
    """Which runs a listing shows: every filter given must match."""

    states: Collection[StateType] | None = None
    deployment_id: UUID | None = None
    flow_name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def condition(self) -> sa.ColumnElement[bool]:
        c = flow_runs.c
        parts: list[sa.ColumnElement[bool]] = [sa.true()]
        if self.states:
            parts.append(c.state_type.in_([s.value for s in self.states]))
        if self.deployment_id is not None:
            parts.append(c.deployment_id == self.deployment_id)
        if self.flow_name:
            parts.append(c.flow_name == self.flow_name)
        if self.created_after is not None:
            parts.append(c.created >= self.created_after)
        if self.created_before is not None:
            parts.append(c.created < self.created_before)
        return sa.and_(*parts)


class DashboardReads(SQLBase):
    """What the dashboard's pages read that the runners never need."""

    def read_runners(self, limit: int = 200) -> list[RunnerRecord]:
        """Runners, live ones first, then by latest heartbeat."""
        query = (
            sa.select(runners)
            .order_by(runners.c.stopped.is_not(None), runners.c.heartbeat.desc(), runners.c.id)
            .limit(min(limit, MAX_PAGE))
        )
        with self._read() as conn:
            return [RunnerRecord.model_validate(row._asdict()) for row in conn.execute(query)]

    def count_running_by_runner(self) -> dict[UUID, int]:
        """Runs each runner holds now (PENDING, RUNNING or CANCELLING)."""
        query = (
            sa.select(flow_runs.c.runner_id, sa.func.count())
            .where(IS_ACTIVE)
            .group_by(flow_runs.c.runner_id)
        )
        with self._read() as conn:
            return {row[0]: row[1] for row in conn.execute(query) if row[0] is not None}

    def read_served_deployment_ids(self) -> dict[UUID, list[UUID]]:
        """Runner id -> the deployments it serves."""
        query = sa.select(runner_deployments.c.runner_id, runner_deployments.c.deployment_id)
        found: dict[UUID, list[UUID]] = {}
        with self._read() as conn:
            for runner_id, deployment_id in conn.execute(query):
                found.setdefault(runner_id, []).append(deployment_id)
        return found

    def count_ended_by_hour(
        self, since: datetime, until: datetime | None = None
    ) -> list[tuple[str, StateType, int]]:
        """``("2026-12-07 09", COMPLETED, 12)``: runs ended since ``since`` (and before
        ``until``), per UTC hour and final state."""
        end = flow_runs.c.end_time
        if self.is_sqlite:
            hour = sa.func.strftime("%Y-%m-%d %H", end)
        else:
            hour = sa.func.to_char(sa.func.timezone("UTC", end), "YYYY-MM-DD HH24")
        query = (
            sa.select(hour, flow_runs.c.state_type, sa.func.count())
            .where((end >= since) & flow_runs.c.state_type.in_([s.value for s in TERMINAL_STATES]))
            .group_by(hour, flow_runs.c.state_type)
        )
        if until is not None:
            query = query.where(end < until)
        with self._read() as conn:
            return [(str(h), StateType(s), int(n)) for h, s, n in conn.execute(query)]

    def read_recent_failures(self, limit: int = 10) -> list[FlowRun]:
        """The latest runs that ended FAILED or CRASHED, newest first."""
        query = (
            flow_runs.select()
            .where(flow_runs.c.end_time.is_not(None) & flow_runs.c.state_type.in_(FAILED))
            .order_by(flow_runs.c.end_time.desc())
            .limit(min(limit, MAX_PAGE))
        )
        return self._runs(query)

    def read_next_scheduled(self, limit: int = 10) -> list[FlowRun]:
        """Queued runs, soonest first (the queue's own index)."""
        query = (
            flow_runs.select()
            .where(IS_QUEUED)
            .order_by(flow_runs.c.expected_start_time)
            .limit(min(limit, MAX_PAGE))
        )
        return self._runs(query)

    def read_latest_runs(self, deployment_ids: Collection[UUID]) -> dict[UUID, FlowRun]:
        """Each deployment's newest run (one index probe per deployment)."""
        if not deployment_ids:
            return {}
        latest = (
            sa.select(flow_runs.c.id)
            .where(flow_runs.c.deployment_id == deployments.c.id)
            .order_by(flow_runs.c.created.desc())
            .limit(1)
            .scalar_subquery()
        )
        ids = list(deployment_ids)
        found: dict[UUID, FlowRun] = {}
        for start in range(0, len(ids), MAX_PAGE):
            chunk = ids[start : start + MAX_PAGE]
            picked = sa.select(latest).where(deployments.c.id.in_(chunk))
            for run in self._runs(flow_runs.select().where(flow_runs.c.id.in_(picked))):
                assert run.deployment_id is not None
                found[run.deployment_id] = run
        return found

    def read_next_run_times(self, deployment_ids: Collection[UUID]) -> dict[UUID, datetime]:
        """Each of these deployments' soonest queued run's due time."""
        if not deployment_ids:
            return {}
        query = (
            sa.select(flow_runs.c.deployment_id, sa.func.min(flow_runs.c.expected_start_time))
            .where(sa.and_(IS_QUEUED, flow_runs.c.deployment_id.in_(list(deployment_ids))))
            .group_by(flow_runs.c.deployment_id)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return {d: _aware(t) for d, t in rows if t is not None}

    def read_deployment_page(self, limit: int = 100, offset: int = 0) -> list[DeploymentSummary]:
        """Deployments by flow name and name (the unique index's order)."""
        c = deployments.c
        query = (
            sa.select(c.id, c.name, c.flow_name, c.paused, c.schedules)
            .order_by(c.flow_name, c.name)
            .limit(min(max(limit, 0), MAX_PAGE))
            .offset(max(offset, 0))
        )
        with self._read() as conn:
            return [DeploymentSummary(*row) for row in conn.execute(query)]

    def read_deployment_names(self, ids: Collection[UUID] | None = None) -> dict[UUID, str]:
        """``flow/name`` of these deployments (or of every one, by name)."""
        c = deployments.c
        query = sa.select(c.id, c.flow_name, c.name).order_by(c.flow_name, c.name)
        if ids is not None:
            if not ids:
                return {}
            query = query.where(c.id.in_(list(ids)))
        with self._read() as conn:
            return {d: f"{flow}/{name}" for d, flow, name in conn.execute(query.limit(MAX_PAGE))}

    def read_run_page(self, where: RunFilter, limit: int = 50, offset: int = 0) -> list[FlowRun]:
        """Runs matching ``where``, newest first."""
        query = (
            flow_runs.select()
            .where(where.condition())
            .order_by(flow_runs.c.created.desc(), flow_runs.c.id)
            .limit(min(max(limit, 0), MAX_PAGE))
            .offset(max(offset, 0))
        )
        return self._runs(query)

    def read_child_runs(self, flow_run_id: UUID, limit: int = 100) -> list[FlowRun]:
        """Runs started from within this run (none where the schema cannot tell)."""
        parent = flow_runs.c.get("parent_flow_run_id")
        if parent is None:
            return []
        query = (
            flow_runs.select()
            .where(parent == flow_run_id)
            .order_by(flow_runs.c.created)
            .limit(min(limit, MAX_PAGE))
        )
        return self._runs(query)

    def last_run_change(self) -> datetime | None:
        """When a run last changed: the dashboard's pages refresh when this moves."""
        query = sa.select(sa.func.max(flow_runs.c.updated))
        with self._read() as conn:
            value = conn.execute(query).scalar()
        return None if value is None else _aware(value)

    def _runs(self, query: sa.Select[tuple[object, ...]] | sa.Select[object]) -> list[FlowRun]:
        with self._read() as conn:
            return [flow_run_from_row(row._asdict()) for row in conn.execute(query)]


def _aware(value: datetime | str) -> datetime:
    """An aggregate's datetime: SQLite gives text, without a zone (stored as UTC)."""
    from datetime import UTC

    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

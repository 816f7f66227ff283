"""The dashboard's reads: small, bounded queries over the whole database, each on an index.

The dashboard shows every runner, deployment and run of the database, not only
those of the runner serving it, so these read across runners. Each returns at
most a page of rows (the hourly counts are grouped by the database).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

import sqlalchemy as sa

from headrace.flow_runs import FlowRun
from headrace.states import TERMINAL_STATES, StateType, utcnow
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE, RunnerRecord
from headrace.store.rows import flow_run_from_row
from headrace.store.tables import (
    ACTIVE,
    deployments,
    flow_runs,
    logs,
    runner_deployments,
    runners,
)

FAILED = (StateType.FAILED.value, StateType.CRASHED.value)
# Written out, not bound: SQLite uses a partial index only for a condition it can match
# to the index's own, as written.
IS_ACTIVE = sa.text(f"flow_runs.state_type IN {ACTIVE}")
IS_QUEUED = sa.text("flow_runs.state_type = 'SCHEDULED'")
DUE_SCAN_LIMIT = 1_000_000


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
    older_than: tuple[datetime, UUID] | None = None
    """The last run of the page before (its creation time and id): a page further down
    starts there, on the index, however far down it is."""

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
        if self.older_than is not None:
            created, run_id = self.older_than
            parts.append(c.created <= created)  # a range on the index; then the tie
            parts.append((c.created < created) | (c.id > run_id))
        return sa.and_(*parts)


class RunBrief(NamedTuple):
    """A run as a list or chart shows it in passing."""

    id: UUID
    created: datetime
    start_time: datetime | None
    end_time: datetime | None
    state_type: StateType
    state_name: str


BRIEF = (
    flow_runs.c.id,
    flow_runs.c.created,
    flow_runs.c.start_time,
    flow_runs.c.end_time,
    flow_runs.c.state_type,
    flow_runs.c.state_name,
)


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

    def count_due_runs(self) -> tuple[dict[UUID, int], dict[UUID, int]]:
        """Runs queued and due now: per deployment, and per runner an ad-hoc run is
        addressed to (the queue's own partial index)."""
        c = flow_runs.c
        # Grouped outside: grouped directly, SQLite walks a deployment index through
        # every run instead of the queue's index through the queued ones.
        due = (
            sa.select(c.deployment_id, c.runner_id)
            .where(sa.and_(IS_QUEUED, c.expected_start_time <= utcnow()))
            .limit(DUE_SCAN_LIMIT)
            .subquery()
        )
        query = sa.select(due.c.deployment_id, due.c.runner_id, sa.func.count()).group_by(
            due.c.deployment_id, due.c.runner_id
        )
        by_deployment: dict[UUID, int] = {}
        by_runner: dict[UUID, int] = {}
        with self._read() as conn:
            for deployment_id, runner_id, n in conn.execute(query):
                if deployment_id is not None:
                    by_deployment[deployment_id] = by_deployment.get(deployment_id, 0) + n
                elif runner_id is not None:
                    by_runner[runner_id] = by_runner.get(runner_id, 0) + n
        return by_deployment, by_runner

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

    def read_latest_runs(self, deployment_ids: Collection[UUID]) -> dict[UUID, RunBrief]:
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
        found: dict[UUID, RunBrief] = {}
        with self._read() as conn:
            for start in range(0, len(ids), MAX_PAGE):
                picked = sa.select(latest).where(
                    deployments.c.id.in_(ids[start : start + MAX_PAGE])
                )
                query = sa.select(flow_runs.c.deployment_id, *BRIEF).where(
                    flow_runs.c.id.in_(picked)
                )
                for deployment_id, *brief in conn.execute(query):
                    found[deployment_id] = _brief(brief)
        return found

    def read_run_briefs(self, deployment_id: UUID, limit: int = 200) -> list[RunBrief]:
        """A deployment's newest runs, briefly, newest first."""
        query = (
            sa.select(*BRIEF)
            .where(flow_runs.c.deployment_id == deployment_id)
            .order_by(flow_runs.c.created.desc())
            .limit(min(limit, MAX_PAGE))
        )
        with self._read() as conn:
            return [_brief(list(row)) for row in conn.execute(query)]

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

    def last_changes(self) -> tuple[datetime | None, int | None]:
        """When a run last changed, and the newest log line's id: the dashboard's pages
        re-read when either moves (two index lookups)."""
        query = sa.select(
            sa.select(sa.func.max(flow_runs.c.updated)).scalar_subquery(),
            sa.select(sa.func.max(logs.c.id)).scalar_subquery(),
        )
        with self._read() as conn:
            changed, log_id = conn.execute(query).one()
        return (None if changed is None else _aware(changed)), log_id

    def _runs(self, query: sa.Select[tuple[object, ...]] | sa.Select[object]) -> list[FlowRun]:
        with self._read() as conn:
            return [flow_run_from_row(row._asdict()) for row in conn.execute(query)]


def _brief(values: list[Any]) -> RunBrief:
    run_id, created, start, end, state_type, state_name = values
    return RunBrief(run_id, created, start, end, StateType(state_type), state_name)


def _aware(value: datetime | str) -> datetime:
    """An aggregate's datetime: SQLite gives text, without a zone (stored as UTC)."""
    from datetime import UTC

    parsed = datetime.fromisoformat(value) if isinstance(value, str) else value
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

"""Listing runs: a page of those matching filters, newest first, and how many match by state.

Both take the same filters, so a page and the totals under it always agree.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from headrace.flow_runs import FlowRun
from headrace.states import StateType
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE
from headrace.store.rows import flow_run_from_row
from headrace.store.tables import flow_runs


def run_conditions(
    *,
    ids: Collection[UUID] | None = None,
    deployment_id: UUID | None = None,
    flow_name: str | None = None,
    states: Collection[StateType] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    parent_flow_run_id: UUID | None = None,
) -> list[sa.ColumnElement[bool]]:
    """Each filter given as a condition; ``since``/``until`` bound when runs were created."""
    conditions: list[sa.ColumnElement[bool]] = []
    if parent_flow_run_id is not None:
        conditions.append(flow_runs.c.parent_flow_run_id == parent_flow_run_id)
    if ids is not None:
        conditions.append(flow_runs.c.id.in_(list(ids)))
    if deployment_id is not None:
        conditions.append(flow_runs.c.deployment_id == deployment_id)
    if flow_name is not None:
        conditions.append(flow_runs.c.flow_name == flow_name)
    if states is not None:
        conditions.append(flow_runs.c.state_type.in_([s.value for s in states]))
    if since is not None:
        conditions.append(flow_runs.c.created >= since)
    if until is not None:
        conditions.append(flow_runs.c.created < until)
    return conditions


class RunListing(SQLBase):
    """Reading many runs at once."""

    def read_flow_runs(
        self,
        *,
        ids: Collection[UUID] | None = None,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
        parent_flow_run_id: UUID | None = None,
    ) -> list[FlowRun]:
        """Runs matching every given filter, newest first."""
        conditions = run_conditions(
            ids=ids,
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=states,
            since=since,
            until=until,
            parent_flow_run_id=parent_flow_run_id,
        )
        query = flow_runs.select().where(sa.true(), *conditions)
        query = query.order_by(flow_runs.c.created.desc(), flow_runs.c.id)
        query = query.limit(min(max(limit, 0), MAX_PAGE)).offset(max(offset, 0))
        with self._read() as conn:
            return [flow_run_from_row(row._asdict()) for row in conn.execute(query)]

    def count_flow_runs(
        self,
        *,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        parent_flow_run_id: UUID | None = None,
    ) -> dict[StateType, int]:
        """How many runs match every given filter, by state (states with none left out)."""
        conditions = run_conditions(
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=states,
            since=since,
            until=until,
            parent_flow_run_id=parent_flow_run_id,
        )
        query = (
            sa.select(flow_runs.c.state_type, sa.func.count())
            .where(sa.true(), *conditions)
            .group_by(flow_runs.c.state_type)
        )
        with self._read() as conn:
            return {StateType(state): count for state, count in conn.execute(query)}

"""The hot statements, built once with bind parameters.

Building a SQLAlchemy statement and its cache key costs more than running it
on SQLite; the runner's per-run writes (claim, state changes) reuse these.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from headrace.states import StateType
from headrace.store.tables import flow_runs

STATE_COLUMNS = ("state_type", "state_name", "state_message", "state_timestamp", "updated")


@functools.cache
def update_state(fields: frozenset[str], owned: bool = False) -> sa.Update:
    """Compare-and-set a run's state: ``WHERE id = :run_id AND state_type IN :sources``.

    ``owned`` adds ``AND runner_id = :owner AND run_count = :attempt``: only the
    attempt a runner claimed may record its progress, never a later one.
    """
    columns = (*STATE_COLUMNS, *sorted(fields))
    condition = (flow_runs.c.id == sa.bindparam("run_id")) & flow_runs.c.state_type.in_(
        sa.bindparam("sources", expanding=True)
    )
    if owned:
        condition &= (flow_runs.c.runner_id == sa.bindparam("owner")) & (
            flow_runs.c.run_count == sa.bindparam("attempt")
        )
    return (
        flow_runs.update()
        .where(condition)
        .values({column: sa.bindparam(f"new_{column}") for column in columns})
        .returning(*flow_runs.c)
    )


def update_state_params(
    run_id: Any, sources: list[str], values: dict[str, Any], attempt: Any = None
) -> dict[str, Any]:
    params = {"run_id": run_id, "sources": sources, **{f"new_{k}": v for k, v in values.items()}}
    if attempt is not None:
        params["owner"], params["attempt"] = attempt
    return params


def id_set(name: str, dialect: str) -> sa.ColumnElement[Any] | sa.Select[Any]:
    """A set of ids as a single bind parameter: a JSON array on SQLite, a uuid[] on PostgreSQL.

    An expanding ``IN`` renders and binds one parameter per id on every
    execution; a runner serving hundreds of deployments would pay that on
    every claim. Bind the value from ``id_set_value``.
    """
    if dialect == "sqlite":
        values = sa.func.json_each(sa.bindparam(name, type_=sa.String())).table_valued("value")
        return sa.select(values.c.value)
    uuids = postgresql.ARRAY(sa.Uuid())
    return sa.any_(sa.cast(sa.bindparam(name, type_=uuids), uuids))


def in_id_set(column: sa.ColumnElement[Any], name: str, dialect: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the ids bound to ``name`` (an ``id_set``)."""
    ids = id_set(name, dialect)
    return column.in_(ids) if isinstance(ids, sa.Select) else column == ids


def id_set_value(ids: Collection[UUID], dialect: str) -> Any:
    """The bind value for an ``id_set`` parameter (SQLite stores a uuid as its 32 hex digits)."""
    if dialect == "sqlite":
        return json.dumps([i.hex for i in ids])
    return list(ids)


@functools.cache
def cancelling_among(dialect: str) -> sa.Select[Any]:
    """The ids among ``run_ids`` whose run is CANCELLING."""
    return sa.select(flow_runs.c.id).where(
        in_id_set(flow_runs.c.id, "run_ids", dialect)
        & (flow_runs.c.state_type == StateType.CANCELLING.value)
    )


@functools.cache
def cancel_asked_among(dialect: str) -> sa.Select[Any]:
    """The ids among ``run_ids`` whose run is CANCELLING or CANCELLED."""
    asked = [StateType.CANCELLING.value, StateType.CANCELLED.value]
    return sa.select(flow_runs.c.id).where(
        in_id_set(flow_runs.c.id, "run_ids", dialect) & flow_runs.c.state_type.in_(asked)
    )


@functools.cache
def taken_among(dialect: str) -> sa.Select[Any]:
    """The ids among ``run_ids`` that runner ``:runner_id`` no longer holds as active runs."""
    held = (flow_runs.c.runner_id == sa.bindparam("runner_id")) & flow_runs.c.state_type.in_(
        [StateType.PENDING.value, StateType.RUNNING.value, StateType.CANCELLING.value]
    )
    return sa.select(flow_runs.c.id).where(
        in_id_set(flow_runs.c.id, "run_ids", dialect) & sa.not_(held)
    )


@functools.cache
def due_runs(*, by_deployment: bool, by_runner: bool, dialect: str) -> sa.Select[Any]:
    """Due SCHEDULED runs of some deployments and/or the ad-hoc runs addressed to one runner
    (``:addressee``, its id), oldest first.

    Locks its rows (``FOR UPDATE SKIP LOCKED``) except on SQLite, where the claim's
    ``BEGIN IMMEDIATE`` already makes it the only writer.
    """
    owned: list[sa.ColumnElement[bool]] = []
    if by_deployment:
        owned.append(in_id_set(flow_runs.c.deployment_id, "deployment_ids", dialect))
    if by_runner:
        owned.append(
            flow_runs.c.deployment_id.is_(None)
            & (flow_runs.c.runner_id == sa.bindparam("addressee"))
            & flow_runs.c.parent_flow_run_id.is_(None)  # a subflow's run: never claimed
        )
    query = (
        sa.select(flow_runs.c.id, flow_runs.c.expected_start_time)
        .where(
            (flow_runs.c.state_type == StateType.SCHEDULED.value)
            & (flow_runs.c.expected_start_time <= sa.bindparam("now"))
            & sa.or_(sa.false(), *owned)
        )
        .order_by(flow_runs.c.expected_start_time, flow_runs.c.created)
        .limit(sa.bindparam("limit", type_=sa.Integer()))
    )
    return query if dialect == "sqlite" else query.with_for_update(skip_locked=True)


@functools.cache
def mark_claimed() -> sa.Update:
    """SCHEDULED -> PENDING for a set of runs, counting the attempt."""
    return (
        flow_runs.update()
        .where(
            flow_runs.c.id.in_(sa.bindparam("run_ids", expanding=True))
            & (flow_runs.c.state_type == StateType.SCHEDULED.value)
        )
        .values(
            state_type=StateType.PENDING.value,
            state_name="Pending",
            state_message=None,
            state_timestamp=sa.bindparam("now"),
            run_count=flow_runs.c.run_count + 1,
            runner_id=sa.bindparam("runner_id"),
            runner_name=sa.bindparam("new_runner_name"),
            pid=None,
            updated=sa.bindparam("now"),
        )
        .returning(*flow_runs.c)
    )

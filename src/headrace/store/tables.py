"""The database schema as SQLAlchemy Core tables; the migrations follow it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from headrace.jsonvalues import storable

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps them as naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("headrace stores aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class StorableString(sa.TypeDecorator[str]):
    """Text as every store can keep it: NUL and unpaired surrogates become U+FFFD.

    PostgreSQL refuses NUL in text, and no UTF-8 text holds an unpaired surrogate:
    one such character would fail the whole transaction that writes it (a batch of
    other runs' log lines, say). Repaired here, it is repaired alike on every store.
    """

    impl = sa.String()
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


class StorableText(StorableString):
    """``StorableString`` for long text (messages, log lines)."""

    impl = sa.Text()
    cache_ok = True


JSON: sa.types.TypeEngine[Any] = sa.JSON()
"""Plain json on PostgreSQL too (migration 0005): values read back as they were written.
Its strings are repaired as ``StorableString`` repairs text (the engine's JSON serializer)."""
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

ACTIVE = "('PENDING', 'RUNNING', 'CANCELLING')"

deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", StorableString(), nullable=False),
    sa.Column("flow_name", StorableString(), nullable=False),
    sa.Column("entrypoint", StorableString()),
    sa.Column("parameter_schema", JSON, nullable=False),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("enforce_parameter_schema", sa.Boolean(), nullable=False),
    sa.Column("schedules", JSON, nullable=False),
    sa.Column("tags", JSON, nullable=False),
    sa.Column("description", StorableText()),
    sa.Column("version", StorableString()),
    sa.Column("paused", sa.Boolean(), nullable=False),
    sa.Column("catchup", sa.Boolean(), nullable=False),
    sa.Column("concurrency_limit", sa.Integer()),
    sa.Column("on_shutdown", StorableString(), nullable=False),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("retry_delay_seconds", sa.Float(), nullable=False),
    sa.Column("timeout_seconds", sa.Float()),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("updated", UTCDateTime(), nullable=False),
    sa.Column("planning_since", UTCDateTime()),
    sa.Column("notify", JSON, nullable=False, server_default="[]"),
    sa.Column("retry_delays", JSON),
    sa.Column("retry_jitter_factor", sa.Float()),
    sa.UniqueConstraint("flow_name", "name"),
)

flow_runs = sa.Table(
    "flow_runs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", StorableString(), nullable=False),
    sa.Column("flow_name", StorableString(), nullable=False),
    sa.Column("deployment_id", sa.Uuid(), sa.ForeignKey("deployments.id", ondelete="SET NULL")),
    sa.Column("entrypoint", StorableString()),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("parent_task_run_id", sa.Uuid()),
    sa.Column("idempotency_scope", StorableString(), nullable=False),
    sa.Column("idempotency_key", StorableString()),
    sa.Column("state_type", sa.String(16), nullable=False),
    sa.Column("state_name", StorableString(), nullable=False),
    sa.Column("state_message", StorableText()),
    sa.Column("state_timestamp", UTCDateTime(), nullable=False),
    sa.Column("expected_start_time", UTCDateTime()),
    sa.Column("start_time", UTCDateTime()),
    sa.Column("end_time", UTCDateTime()),
    sa.Column("run_count", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("max_retries", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("retry_delay_seconds", sa.Float(), nullable=False, server_default="0"),
    sa.Column("timeout_seconds", sa.Float()),
    sa.Column("runner_name", StorableString()),
    sa.Column("runner_id", sa.Uuid()),
    sa.Column("pid", sa.Integer()),
    sa.Column("result", JSON),
    sa.Column("result_truncated", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("traceparent", sa.String(55)),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Column("updated", UTCDateTime(), nullable=False),
    sa.Column("retry_delays", JSON),
    sa.Column("retry_jitter_factor", sa.Float()),
    sa.Column("parent_flow_run_id", sa.Uuid()),
    sa.Column("result_ref", StorableText()),
    sa.UniqueConstraint("idempotency_scope", "idempotency_key"),
    # "scheduled runs due before T, oldest first": a partial index of queued runs only.
    sa.Index(
        "ix_flow_runs_queue",
        "expected_start_time",
        sqlite_where=sa.text("state_type = 'SCHEDULED'"),
        postgresql_where=sa.text("state_type = 'SCHEDULED'"),
    ),
    sa.Index("ix_flow_runs_deployment_state", "deployment_id", "state_type", "expected_start_time"),
    sa.Index(
        "ix_flow_runs_active",
        "runner_id",
        sqlite_where=sa.text(f"state_type IN {ACTIVE}"),
        postgresql_where=sa.text(f"state_type IN {ACTIVE}"),
    ),
    sa.Index("ix_flow_runs_created", "created"),
    # The dashboard: a deployment's newest runs, runs ended lately, runs changed lately.
    sa.Index("ix_flow_runs_deployment_created", "deployment_id", "created"),
    sa.Index("ix_flow_runs_end_time", "end_time", "state_type"),
    sa.Index("ix_flow_runs_updated", "updated"),
    sa.Index("ix_flow_runs_parent_flow_run_id", "parent_flow_run_id"),
    # "ended before T, oldest first" (retention): ended runs only, so creating a run skips it.
    sa.Index(
        "ix_flow_runs_ended",
        "end_time",
        sqlite_where=sa.text("end_time IS NOT NULL"),
        postgresql_where=sa.text("end_time IS NOT NULL"),
    ),
)

flow_run_states = sa.Table(
    "flow_run_states",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "flow_run_id",
        sa.Uuid(),
        sa.ForeignKey("flow_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("name", StorableString(), nullable=False),
    sa.Column("message", StorableText()),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Index("ix_flow_run_states_flow_run_id_id", "flow_run_id", "id"),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "flow_run_id",
        sa.Uuid(),
        sa.ForeignKey("flow_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("level", sa.Integer(), nullable=False),
    sa.Column("message", StorableText(), nullable=False),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Index("ix_logs_flow_run_id_timestamp", "flow_run_id", "timestamp"),
)

runners = sa.Table(
    "runners",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", StorableString(), nullable=False),
    sa.Column("host", StorableString(), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started", UTCDateTime(), nullable=False),
    sa.Column("heartbeat", UTCDateTime(), nullable=False),
    sa.Column("stopped", UTCDateTime()),
    sa.Column("process_limit", sa.Integer()),
    sa.Column("backlog_limit", sa.Integer()),
)
"""Runners, live or long gone: a heartbeat shows one alive. ``process_limit`` is how many
runs it holds at once, ``backlog_limit`` how many may wait for it (None for a runner
recorded before they were stored)."""

runner_deployments = sa.Table(
    "runner_deployments",
    metadata,
    sa.Column(
        "runner_id",
        sa.Uuid(),
        sa.ForeignKey("runners.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "deployment_id",
        sa.Uuid(),
        sa.ForeignKey("deployments.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Index("ix_runner_deployments_deployment_id", "deployment_id"),
)
"""Which runner serves which deployment: what "is anybody going to run this?" reads."""

notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "flow_run_id",
        sa.Uuid(),
        sa.ForeignKey("flow_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("url", StorableString(), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status_code", sa.Integer()),
    sa.Column("error", StorableText()),
    sa.Column("delivered", sa.Boolean(), nullable=False),
    sa.Column("timestamp", UTCDateTime(), nullable=False),
    sa.Index("ix_notification_deliveries_flow_run_id_id", "flow_run_id", "id"),
)
"""Each attempt to deliver a run's webhook: what the receiver answered, or why nobody did."""

task_runs = sa.Table(
    "task_runs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column(
        "flow_run_id",
        sa.Uuid(),
        sa.ForeignKey("flow_runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", StorableString(), nullable=False),
    sa.Column("task_name", StorableString(), nullable=False),
    sa.Column("state_type", sa.String(16), nullable=False),
    sa.Column("state_name", StorableString(), nullable=False),
    sa.Column("state_message", StorableText()),
    sa.Column("state_timestamp", UTCDateTime(), nullable=False),
    sa.Column("run_count", sa.Integer(), nullable=False),
    sa.Column("start_time", UTCDateTime()),
    sa.Column("end_time", UTCDateTime()),
    sa.Column("cache_key", StorableString()),
    sa.Index("ix_task_runs_flow_run_id_start_time", "flow_run_id", "start_time"),
)
"""The task calls of each flow run, as their runs' processes reported them."""

task_cache = sa.Table(
    "task_cache",
    metadata,
    sa.Column("scope", StorableString(), primary_key=True),
    sa.Column("key", StorableString(), primary_key=True),
    sa.Column("result", JSON),
    sa.Column("expires", UTCDateTime()),
    sa.Column("created", UTCDateTime(), nullable=False),
    sa.Index("ix_task_cache_scope_created", "scope", "created"),
)
"""Task results kept under their cache keys, per deployment (``task_runs.cache_scope``)."""

FLOW_RUN_DEPENDENTS: tuple[sa.Column[Any], ...] = (
    logs.c.flow_run_id,
    flow_run_states.c.flow_run_id,
    notification_deliveries.c.flow_run_id,
    task_runs.c.flow_run_id,
)
"""Every column that refers to a run (``flow_runs.id``) from another table: deleting runs
deletes their rows here first, in this order (a table that others refer to after them),
then the runs; so it works whether or not a foreign key cascades. A table that refers to
runs is added here (a test finds any missing)."""

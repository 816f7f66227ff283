"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 23:07:31.460200
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import headrace.store.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "deployments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("flow_name", sa.String(), nullable=False),
        sa.Column("entrypoint", sa.String(), nullable=True),
        sa.Column(
            "parameter_schema",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("enforce_parameter_schema", sa.Boolean(), nullable=False),
        sa.Column(
            "schedules",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.String(), nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("catchup", sa.Boolean(), nullable=False),
        sa.Column("concurrency_limit", sa.Integer(), nullable=True),
        sa.Column("on_shutdown", sa.String(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("retry_delay_seconds", sa.Float(), nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("created", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
        sa.UniqueConstraint("flow_name", "name", name=op.f("uq_deployments_flow_name_name")),
    )
    op.create_table(
        "runners",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("heartbeat", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stopped", headrace.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runners")),
    )
    op.create_table(
        "flow_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("flow_name", sa.String(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=True),
        sa.Column("entrypoint", sa.String(), nullable=True),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("parent_task_run_id", sa.Uuid(), nullable=True),
        sa.Column("idempotency_scope", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=True),
        sa.Column("state_type", sa.String(length=16), nullable=False),
        sa.Column("state_name", sa.String(), nullable=False),
        sa.Column("state_message", sa.Text(), nullable=True),
        sa.Column(
            "state_timestamp", headrace.store.tables.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "expected_start_time", headrace.store.tables.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("start_time", headrace.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("end_time", headrace.store.tables.UTCDateTime(timezone=True), nullable=True),
        sa.Column("run_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_retries", sa.Integer(), server_default="0", nullable=False),
        sa.Column("retry_delay_seconds", sa.Float(), server_default="0", nullable=False),
        sa.Column("timeout_seconds", sa.Float(), nullable=True),
        sa.Column("runner_name", sa.String(), nullable=True),
        sa.Column("runner_id", sa.Uuid(), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column(
            "result",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("created", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_flow_runs_deployment_id_deployments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_runs")),
        sa.UniqueConstraint(
            "idempotency_scope",
            "idempotency_key",
            name=op.f("uq_flow_runs_idempotency_scope_idempotency_key"),
        ),
    )
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_runs_active",
            ["runner_id"],
            unique=False,
            sqlite_where=sa.text("state_type IN ('PENDING', 'RUNNING', 'CANCELLING')"),
            postgresql_where=sa.text("state_type IN ('PENDING', 'RUNNING', 'CANCELLING')"),
        )
        batch_op.create_index("ix_flow_runs_created", ["created"], unique=False)
        batch_op.create_index(
            "ix_flow_runs_deployment_state",
            ["deployment_id", "state_type", "expected_start_time"],
            unique=False,
        )
        batch_op.create_index(
            "ix_flow_runs_queue",
            ["expected_start_time"],
            unique=False,
            sqlite_where=sa.text("state_type = 'SCHEDULED'"),
            postgresql_where=sa.text("state_type = 'SCHEDULED'"),
        )

    op.create_table(
        "flow_run_states",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("flow_run_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("timestamp", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_run_id"],
            ["flow_runs.id"],
            name=op.f("fk_flow_run_states_flow_run_id_flow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_run_states")),
    )
    with op.batch_alter_table("flow_run_states", schema=None) as batch_op:
        batch_op.create_index(
            "ix_flow_run_states_flow_run_id_id", ["flow_run_id", "id"], unique=False
        )

    op.create_table(
        "logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("flow_run_id", sa.Uuid(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("timestamp", headrace.store.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_run_id"],
            ["flow_runs.id"],
            name=op.f("fk_logs_flow_run_id_flow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logs")),
    )
    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_logs_flow_run_id_timestamp", ["flow_run_id", "timestamp"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("logs", schema=None) as batch_op:
        batch_op.drop_index("ix_logs_flow_run_id_timestamp")

    op.drop_table("logs")
    with op.batch_alter_table("flow_run_states", schema=None) as batch_op:
        batch_op.drop_index("ix_flow_run_states_flow_run_id_id")

    op.drop_table("flow_run_states")
    with op.batch_alter_table("flow_runs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_flow_runs_queue",
            sqlite_where=sa.text("state_type = 'SCHEDULED'"),
            postgresql_where=sa.text("state_type = 'SCHEDULED'"),
        )
        batch_op.drop_index("ix_flow_runs_deployment_state")
        batch_op.drop_index("ix_flow_runs_created")
        batch_op.drop_index(
            "ix_flow_runs_active",
            sqlite_where=sa.text("state_type IN ('PENDING', 'RUNNING', 'CANCELLING')"),
            postgresql_where=sa.text("state_type IN ('PENDING', 'RUNNING', 'CANCELLING')"),
        )

    op.drop_table("flow_runs")
    op.drop_table("runners")
    op.drop_table("deployments")

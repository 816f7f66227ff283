"""task runs, the task cache, and retry delay lists

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00.000000

Flow runs record the task calls their processes report (``task_runs``), and
deployments keep their tasks' cached results (``task_cache``). Deployments and
runs keep a list of retry delays (one per retry) and a jitter factor.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from headrace.store.tables import JSON, StorableString, StorableText, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("deployments", "flow_runs"):
        op.add_column(table, sa.Column("retry_delays", JSON, nullable=True))
        op.add_column(table, sa.Column("retry_jitter_factor", sa.Float(), nullable=True))
    op.create_table(
        "task_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("flow_run_id", sa.Uuid(), nullable=False),
        sa.Column("name", StorableString(), nullable=False),
        sa.Column("task_name", StorableString(), nullable=False),
        sa.Column("state_type", sa.String(16), nullable=False),
        sa.Column("state_name", StorableString(), nullable=False),
        sa.Column("state_message", StorableText(), nullable=True),
        sa.Column("state_timestamp", UTCDateTime(), nullable=False),
        sa.Column("run_count", sa.Integer(), nullable=False),
        sa.Column("start_time", UTCDateTime(), nullable=True),
        sa.Column("end_time", UTCDateTime(), nullable=True),
        sa.Column("cache_key", StorableString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["flow_run_id"],
            ["flow_runs.id"],
            name=op.f("fk_task_runs_flow_run_id_flow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_runs")),
    )
    op.create_index(
        "ix_task_runs_flow_run_id_start_time", "task_runs", ["flow_run_id", "start_time"]
    )
    op.create_table(
        "task_cache",
        sa.Column("scope", StorableString(), nullable=False),
        sa.Column("key", StorableString(), nullable=False),
        sa.Column("result", JSON, nullable=True),
        sa.Column("expires", UTCDateTime(), nullable=True),
        sa.Column("created", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_task_cache")),
    )
    op.create_index("ix_task_cache_scope_created", "task_cache", ["scope", "created"])


def downgrade() -> None:
    op.drop_index("ix_task_cache_scope_created", table_name="task_cache")
    op.drop_table("task_cache")
    op.drop_index("ix_task_runs_flow_run_id_start_time", table_name="task_runs")
    op.drop_table("task_runs")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch: recreating flow_runs
    # on SQLite would drop the state history trigger of 0003 with it.
    for table in ("deployments", "flow_runs"):
        op.drop_column(table, "retry_jitter_factor")
        op.drop_column(table, "retry_delays")

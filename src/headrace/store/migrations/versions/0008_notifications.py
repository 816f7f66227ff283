"""webhooks of deployments, and every attempt to deliver one

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 10:00:00.000000

A deployment keeps its webhook targets (``notify``, JSON); each delivery
attempt of a run's webhook is a row of ``notification_deliveries``, deleted
with its run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "deployments", sa.Column("notify", sa.JSON(), nullable=False, server_default="[]")
    )
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "notification_deliveries",
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("flow_run_id", sa.Uuid(), nullable=False),
        sa.Column("url", sa.String(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("delivered", sa.Boolean(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["flow_run_id"],
            ["flow_runs.id"],
            name=op.f("fk_notification_deliveries_flow_run_id_flow_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
    )
    op.create_index(
        "ix_notification_deliveries_flow_run_id_id",
        "notification_deliveries",
        ["flow_run_id", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_flow_run_id_id", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_column("deployments", "notify")

"""when a deployment's schedules last started (or resumed) planning

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 07:45:00.000000

Missed runs are the times that passed while no runner served a deployment.
Times that passed while it was paused, or while another schedule replaced
its own, were not missed: ``planning_since`` is when a schedule was added or
resumed, and catch-up never goes back past it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import headrace.store.tables

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "deployments",
        sa.Column("planning_since", headrace.store.tables.UTCDateTime(timezone=True)),
    )


def downgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.drop_column("planning_since")

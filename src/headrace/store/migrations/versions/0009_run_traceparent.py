"""runs keep the trace context of the request that created them

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 10:00:00.000000

A trigger that carries a W3C ``traceparent`` (or is traced itself) stores it
with its run, so whichever runner executes the run links its spans to the
caller's trace and hands the run's process ``TRACEPARENT``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flow_runs", sa.Column("traceparent", sa.String(55)))


def downgrade() -> None:
    # Not a batch (copy-and-move) on SQLite: that would drop the table's triggers (0002, 0003).
    op.drop_column("flow_runs", "traceparent")

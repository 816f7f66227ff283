"""runs know their parent run, and where a result too large for the row is kept

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 10:00:00.000000

A flow called inside a running flow is a child run: ``parent_flow_run_id`` is
its caller's id (and a run started by ``run_deployment`` inside a run links its
caller the same way). A result larger than a row keeps is written to the result
store, and ``result_ref`` says where.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("flow_runs", sa.Column("parent_flow_run_id", sa.Uuid(), nullable=True))
    op.add_column("flow_runs", sa.Column("result_ref", sa.Text(), nullable=True))
    op.create_index("ix_flow_runs_parent_flow_run_id", "flow_runs", ["parent_flow_run_id"])


def downgrade() -> None:
    # Not a batch (copy-and-move) on SQLite: that would drop the table's triggers (0002, 0003).
    op.drop_index("ix_flow_runs_parent_flow_run_id", table_name="flow_runs")
    op.drop_column("flow_runs", "result_ref")
    op.drop_column("flow_runs", "parent_flow_run_id")

"""runs say when their result was too large to keep

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 08:00:00.000000

A result over the size a run keeps is not stored: ``result`` stays null and
``result_truncated`` is true, so a null result is never mistaken for the value.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "flow_runs",
        sa.Column("result_truncated", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Not a batch (copy-and-move) on SQLite: that would drop the table's triggers (0002, 0003).
    op.drop_column("flow_runs", "result_truncated")

"""an index of ended runs by end time, for retention

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 10:00:00.000000

Runners delete runs that ended before a cutoff (``HEADRACE_RETENTION_DAYS``),
a few hundred at a time, oldest first. Without an index each batch would read
the whole table while it holds SQLite's write lock. Partial: a run that has
not ended is not in it, so creating and claiming runs never touch it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ENDED = sa.text("end_time IS NOT NULL")


def upgrade() -> None:
    op.create_index(
        "ix_flow_runs_ended",
        "flow_runs",
        ["end_time"],
        sqlite_where=ENDED,
        postgresql_where=ENDED,
    )


def downgrade() -> None:
    op.drop_index("ix_flow_runs_ended", table_name="flow_runs")

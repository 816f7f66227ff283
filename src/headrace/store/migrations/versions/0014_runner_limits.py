"""runners record their limits

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 13:00:00.000000

Each runner stores its process limit (``HEADRACE_RUNNER_PROCESS_LIMIT`` or
``limit=``) and its backlog limit (``HEADRACE_RUNNER_BACKLOG_LIMIT``) when it
registers. Every dashboard over the database then shows every runner's
"running / limit", not only its own runner's, and ``headrace ui``, which has
no runner, refuses a trigger when the runners serving the deployment are full.
Nullable: runners recorded before this revision (or by an older headrace on
the same database) have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runners", sa.Column("process_limit", sa.Integer()))
    op.add_column("runners", sa.Column("backlog_limit", sa.Integer()))


def downgrade() -> None:
    op.drop_column("runners", "backlog_limit")
    op.drop_column("runners", "process_limit")

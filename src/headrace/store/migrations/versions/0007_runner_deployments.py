"""which runners serve which deployments

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-25 09:00:00.000000

A deployment's runs wait for a runner serving it. Runners record the
deployments they serve here, so ``deployments ls``/``inspect`` can say who
serves a deployment and whether it is alive, and ``headrace run`` can warn
when nobody will pick a run up.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runner_deployments",
        sa.Column("runner_id", sa.Uuid(), nullable=False),
        sa.Column("deployment_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["runner_id"],
            ["runners.id"],
            name=op.f("fk_runner_deployments_runner_id_runners"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_runner_deployments_deployment_id_deployments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("runner_id", "deployment_id", name=op.f("pk_runner_deployments")),
    )
    op.create_index("ix_runner_deployments_deployment_id", "runner_deployments", ["deployment_id"])


def downgrade() -> None:
    op.drop_index("ix_runner_deployments_deployment_id", table_name="runner_deployments")
    op.drop_table("runner_deployments")

"""indexes for the dashboard's reads

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 10:00:00.000000

The dashboard lists a deployment's newest runs, runs ended in the last hours
(by final state), and runs changed since it last looked: each reads a few rows
through one of these indexes instead of scanning every run.
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_flow_runs_deployment_created", "flow_runs", ["deployment_id", "created"])
    op.create_index("ix_flow_runs_end_time", "flow_runs", ["end_time", "state_type"])
    op.create_index("ix_flow_runs_updated", "flow_runs", ["updated"])


def downgrade() -> None:
    op.drop_index("ix_flow_runs_updated", table_name="flow_runs")
    op.drop_index("ix_flow_runs_end_time", table_name="flow_runs")
    op.drop_index("ix_flow_runs_deployment_created", table_name="flow_runs")

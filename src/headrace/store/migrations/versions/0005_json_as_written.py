"""PostgreSQL keeps parameters and results as written (json, not jsonb)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 07:50:00.000000

jsonb normalises what it stores: keys come back sorted by length, and
``1e308`` comes back as a 309-digit integer. Nothing queries inside these
columns, so they are plain ``json``: a run's parameters and result read back
in the order and form they were written, as on SQLite.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "deployments": ("parameter_schema", "parameters", "schedules", "tags"),
    "flow_runs": ("parameters", "result"),
}


def _retype(to: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in COLUMNS.items():
        changes = ", ".join(f"ALTER COLUMN {c} TYPE {to} USING {c}::{to}" for c in columns)
        op.execute(f"ALTER TABLE {table} {changes}")


def upgrade() -> None:
    _retype("json")


def downgrade() -> None:
    _retype("jsonb")

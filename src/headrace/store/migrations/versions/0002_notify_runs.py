"""notify runners of new and cancelled runs (PostgreSQL)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 01:45:00.000000

Runners LISTEN on ``headrace_runs``: a run queued (or requeued) by any process
starts at once instead of at the next dispatch poll, and a cancellation
reaches its runner at once. The payload is the run's new state. SQLite has no
notifications; its runners watch ``PRAGMA data_version`` instead.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CHANNEL = "headrace_runs"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"""
        CREATE FUNCTION headrace_notify_runs() RETURNS trigger AS $$
        BEGIN
            IF TG_LEVEL = 'STATEMENT' THEN
                PERFORM pg_notify('{CHANNEL}', 'SCHEDULED');
            ELSE
                PERFORM pg_notify('{CHANNEL}', NEW.state_type);
            END IF;
            RETURN NULL;
        END
        $$ LANGUAGE plpgsql
        """
    )
    op.execute(
        "CREATE TRIGGER headrace_runs_inserted AFTER INSERT ON flow_runs "
        "FOR EACH STATEMENT EXECUTE FUNCTION headrace_notify_runs()"
    )
    op.execute(
        "CREATE TRIGGER headrace_runs_queued_or_cancelling AFTER UPDATE OF state_type ON flow_runs "
        "FOR EACH ROW WHEN (NEW.state_type IN ('SCHEDULED', 'CANCELLING') "
        "AND NEW.state_type IS DISTINCT FROM OLD.state_type) "
        "EXECUTE FUNCTION headrace_notify_runs()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER headrace_runs_queued_or_cancelling ON flow_runs")
    op.execute("DROP TRIGGER headrace_runs_inserted ON flow_runs")
    op.execute("DROP FUNCTION headrace_notify_runs()")

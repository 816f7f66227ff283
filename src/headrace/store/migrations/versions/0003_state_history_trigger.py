"""the database records each run's state history itself

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 05:35:00.000000

Every run inserted, and every update of a run's state columns, adds its state
to ``flow_run_states`` from a trigger, in the same statement. The store no
longer sends a second INSERT for the history in each transaction (three
statements per run), and no write to a run's state can leave its history
behind, whoever makes it.
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

STATE_COLUMNS = "state_type, state_name, state_message, state_timestamp"
INSERT_STATE = (
    'INSERT INTO flow_run_states (flow_run_id, type, name, message, "timestamp") '
    "VALUES (NEW.id, NEW.state_type, NEW.state_name, NEW.state_message, NEW.state_timestamp);"
)
EVENTS = {
    "headrace_state_inserted": "AFTER INSERT ON flow_runs",
    "headrace_state_updated": f"AFTER UPDATE OF {STATE_COLUMNS} ON flow_runs",
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION headrace_record_state() RETURNS trigger AS $$
            BEGIN
                {INSERT_STATE}
                RETURN NULL;
            END
            $$ LANGUAGE plpgsql
            """
        )
        for name, event in EVENTS.items():
            op.execute(
                f"CREATE TRIGGER {name} {event} "
                "FOR EACH ROW EXECUTE FUNCTION headrace_record_state()"
            )
        return
    for name, event in EVENTS.items():
        op.execute(f"CREATE TRIGGER {name} {event} FOR EACH ROW BEGIN {INSERT_STATE} END")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in EVENTS:
        op.execute(f"DROP TRIGGER {name} ON flow_runs" if postgres else f"DROP TRIGGER {name}")
    if postgres:
        op.execute("DROP FUNCTION headrace_record_state()")

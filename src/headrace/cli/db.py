"""``headrace db upgrade``: bring a database to the newest schema before any runner opens it."""

from __future__ import annotations

import re

import typer

from headrace.cli.consoles import stdout
from headrace.cli.errors import reported_errors
from headrace.cli.session import command_settings

db_app = typer.Typer(help="Manage the database.", no_args_is_help=True, rich_markup_mode="rich")


@db_app.command(
    "upgrade", epilog="Example: HEADRACE_DATABASE_URL=postgresql://... headrace db upgrade"
)
def db_upgrade() -> None:
    """Bring the database (HEADRACE_DATABASE_URL) to the newest schema."""
    # Lazily: the store loads SQLAlchemy and Alembic, which `headrace --help` never needs.
    from headrace.store import SQLStore
    from headrace.store.migrate import head_revision

    with reported_errors():
        settings = command_settings()
        url = settings.resolved_database_url
        # The store itself, not a client: opening it migrates, and closing it at once
        # leaves no engine behind (the client's stores stay open for the process).
        SQLStore(url).close()
    stdout().print(f"Database {masked_url(url)} is at revision {head_revision()} (newest).")


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^/]*@", r"\1***@", url)

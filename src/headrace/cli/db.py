"""``headrace db upgrade`` and ``headrace db backup``: bring a database to the newest schema
before any runner opens it; copy a SQLite database while runners keep serving."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from headrace.cli.consoles import stdout
from headrace.cli.errors import UsageProblem, fail, reported_errors
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


@db_app.command("backup", epilog="Example: headrace db backup ~/backups/headrace-$(date +%F).db")
def db_backup(
    path: Annotated[Path, typer.Argument(help="Where to write the copy.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite PATH if it exists.")] = False,
) -> None:
    """Copy the SQLite database to PATH, consistent, while runners keep serving.

    For PostgreSQL use pg_dump.
    """
    from headrace.store import SQLStore

    with reported_errors():
        settings = command_settings()
        url = settings.resolved_database_url
        if not url.startswith("sqlite"):
            raise UsageProblem(
                f"{masked_url(url)} is PostgreSQL: back it up with pg_dump "
                "(pg_dump --format=custom --file=headrace.dump URL)"
            )
        path = path.expanduser()
        if path.exists() and not force:
            raise UsageProblem(f"{path} exists: choose another path, or add --force")
        if not path.parent.is_dir():
            raise UsageProblem(f"{path.parent} is not a directory")
        store = SQLStore(url)
        try:
            store.backup(path, overwrite=force)
        except OSError as exc:
            fail(f"Could not write {path}: {exc.strerror or exc}")
        finally:
            store.close()
    size = path.stat().st_size
    stdout().print(f"Backed up {masked_url(url)} to {path} ({size:,} bytes).", markup=False)


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^/]*@", r"\1***@", url)

"""``headrace db upgrade``, ``headrace db backup`` and ``headrace db prune``: bring a database
to the newest schema before any runner opens it; copy a SQLite database while runners keep
serving; delete old runs by hand, as retention does in the background."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from headrace.cli.consoles import stdout
from headrace.cli.durations import parse_duration
from headrace.cli.errors import UsageProblem, fail, reported_errors
from headrace.cli.session import command_settings
from headrace.states import utcnow

if TYPE_CHECKING:
    from headrace.store import Pruned, SQLStore

DEPENDENT_NAMES = {
    "logs": "log lines",
    "flow_run_states": "states",
    "task_runs": "task runs",
    "notification_deliveries": "webhook deliveries",
}
"""How ``db prune`` names the rows it deleted with the runs (other tables: by their name)."""
ALWAYS_SAID = ("logs", "flow_run_states")

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


@db_app.command("prune", epilog="Example: headrace db prune --older-than 90d --dry-run")
def db_prune(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            help="Delete runs that ended longer ago than this: 7d, 12h, 30m (s, m, h, d, w).",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count what would be deleted.")
    ] = False,
) -> None:
    """Delete runs that ended longer ago than DURATION, with their logs and states.

    Runs that have not ended are kept, however old. Deleted in small batches while
    runners keep serving, as runners do themselves with HEADRACE_RETENTION_DAYS.
    """
    from headrace.store import SQLStore

    with reported_errors():
        cutoff = ended_before(older_than)
        store = SQLStore(command_settings().resolved_database_url)
        try:
            pruned = store.count_prunable(cutoff) if dry_run else prune_all(store, cutoff)
        finally:
            store.close()
    verb = "Would delete" if dry_run else "Deleted"
    line = f"{verb} {pruned_text(pruned, cutoff)}"
    stdout().print(f"{line} (dry run: nothing deleted)." if dry_run else f"{line}.", markup=False)


def ended_before(older_than: str) -> datetime:
    """The cutoff ``--older-than`` means: now less the duration."""
    try:
        return utcnow() - parse_duration(older_than, "--older-than")
    except OverflowError:
        raise UsageProblem(f"--older-than: {older_than!r} reaches before any date") from None


def prune_all(store: SQLStore, cutoff: datetime) -> Pruned:
    """Prune batch after batch, paced as runners prune (others write between batches),
    until a batch finds fewer runs than it may take."""
    from headrace.runner.retention import PrunePace
    from headrace.store import Pruned

    pace, total = PrunePace(), Pruned()
    while True:
        asked = pace.batch_runs
        batch = store.prune_flow_runs(cutoff, limit=asked, wait=True)
        total += batch
        if batch.runs < asked:
            return total
        time.sleep(pace.after(batch.seconds))


def pruned_text(pruned: Pruned, cutoff: datetime) -> str:
    """``1,200 flow runs that ended before ... UTC, with 2,400 log lines and 1,200 states``."""
    rows = [
        f"{count:,} {DEPENDENT_NAMES.get(table, table.replace('_', ' '))}"
        for table, count in pruned.dependents.items()
        if count or table in ALWAYS_SAID  # other tables with nothing to delete go unsaid
    ]
    listed = " and ".join([", ".join(rows[:-1]), rows[-1]] if len(rows) > 1 else rows)
    with_rows = f", with {listed}" if rows else ""
    return f"{pruned.runs:,} flow runs that ended before {cutoff:%Y-%m-%d %H:%M:%S} UTC{with_rows}"


def masked_url(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^/]*@", r"\1***@", url)

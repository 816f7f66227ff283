"""Schema migrations with Alembic, applied automatically the first time a database is used.

A long-lived serving process never loads Alembic (about 9 MB it would keep for
its whole life): once ``migrate_in_child_process()`` is called, a database
that is behind is migrated by a short-lived ``python -m headrace.store.migrate``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from headrace.exceptions import StoreError

logger = logging.getLogger(__name__)

URL_VARIABLE = "HEADRACE_MIGRATE_DATABASE_URL"
"""How the child learns the URL: the environment, so no password shows in ``ps``."""
_in_child = False


def migrate_in_child_process() -> None:
    """From now on, migrate in a child process instead of importing Alembic here."""
    global _in_child
    _in_child = True


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
PG_MIGRATION_LOCK = 0x68656164  # "head": one advisory lock id for every headrace database
HEAD_REVISION = "0014"
"""The newest migration; a test keeps it equal to Alembic's head. Knowing it here lets an
up-to-date database be recognised without importing Alembic at all."""


def _config(connection: sa.Connection) -> object:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def stored_revision(connection: sa.Connection) -> str | None:
    """The schema revision recorded in the database, read without Alembic."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def is_up_to_date(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return stored_revision(connection) == HEAD_REVISION


def upgrade(engine: sa.Engine) -> None:
    """Bring the database to the newest schema; cheap when it is already there."""
    if is_up_to_date(engine):
        return
    if _in_child:
        _upgrade_in_child(engine)
        return
    _upgrade(engine)


def _upgrade_in_child(engine: sa.Engine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    # This process's import path too, so the child finds headrace however we found it.
    path = os.pathsep.join(filter(None, sys.path))
    done = subprocess.run(
        [sys.executable, "-m", "headrace.store.migrate"],
        env={**os.environ, URL_VARIABLE: url, "PYTHONPATH": path},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StoreError(f"Migrating the database failed: {reason}")
    if not is_up_to_date(engine):
        raise StoreError("Migrating the database left it behind the newest schema")


def _upgrade(engine: sa.Engine) -> None:
    head = head_revision()
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET LOCAL statement_timeout = 0")  # may run long
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_MIGRATION_LOCK)))
        if current_revision(connection) == head:
            return
        from alembic import command

        logger.info("Migrating the headrace database to %s", head)
        command.upgrade(_config(connection), "head")  # type: ignore[arg-type]


@contextmanager
def _migration_lock(engine: sa.Engine) -> Iterator[None]:
    """Serialise migrations of one SQLite file across processes (PostgreSQL locks in SQL)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def main() -> None:
    """``python -m headrace.store.migrate``: migrate the database named in the environment."""
    from headrace.store.dialects import create_engine

    engine = create_engine(os.environ[URL_VARIABLE])
    try:
        _upgrade(engine)
    except Exception as exc:  # one line for the parent to report
        reason = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        print(f"{type(exc).__name__}: {reason}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()

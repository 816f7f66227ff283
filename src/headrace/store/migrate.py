"""Schema migrations with Alembic, applied automatically the first time a database is used."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
PG_MIGRATION_LOCK = 0x68656164  # "head": one advisory lock id for every headrace database
HEAD_REVISION = "0001"
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


def upgrade(engine: sa.Engine) -> None:
    """Bring the database to the newest schema; cheap when it is already there."""
    with engine.connect() as connection:
        if stored_revision(connection) == HEAD_REVISION:
            return
    head = head_revision()
    with _migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
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

"""The SQL store's foundation: its engine, its transactions and the writes every part shares."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import sqlalchemy as sa

from headrace.exceptions import ObjectNotFound, StoreError, StoreFull, StoreUnavailable
from headrace.states import StateType
from headrace.store.dialects import WRITE_OPTION, create_engine
from headrace.store.migrate import HEAD_REVISION, upgrade
from headrace.store.tables import flow_runs

SQLITE_FULL = "SQLITE_FULL"
POSTGRES_DISK_FULL = "53100"
"""SQLSTATE ``disk_full``."""


def is_full(error: BaseException | None) -> bool:
    """Whether a driver error says the database has no space left (SQLite's "database or
    disk is full", PostgreSQL's ``disk_full``): not the same as a database out of reach."""
    return (
        getattr(error, "sqlite_errorname", None) == SQLITE_FULL
        or getattr(error, "sqlstate", None) == POSTGRES_DISK_FULL
    )


def store_error(exc: sa.exc.DBAPIError) -> StoreError:
    """The headrace error for a driver error: full, out of reach, or failed."""
    if is_full(exc.orig):
        return StoreFull(f"The database is full (no space left): {exc.orig}")
    if isinstance(exc, sa.exc.OperationalError):
        return StoreUnavailable(f"The database cannot be reached: {exc.orig}")
    return StoreError(f"The database operation failed: {exc.orig}")


class SQLBase:
    """An engine (migrated on first use) and read/write transactions that wrap driver errors."""

    def __init__(
        self, url: str, *, migrate: bool = True, timeout_seconds: float | None = None
    ) -> None:
        self.url = url
        self.timeout_seconds = timeout_seconds
        """How long a caller waits for the database (``AsyncStore``); on PostgreSQL, also
        how soon a silent connection or a statement that hangs errors."""
        self.engine = create_engine(url, timeout_seconds)
        self.dialect = self.engine.dialect.name
        if migrate:
            with self._errors():
                upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def schema_is_current(self) -> bool:
        """Whether the database answers and has the schema this store knows: one cheap query."""
        with self._read() as conn:
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        return bool(revision == HEAD_REVISION)

    # -- transactions -------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.DBAPIError as exc:
            raise store_error(exc) from exc

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def _current_state(self, conn: sa.Connection, flow_run_id: UUID) -> StateType:
        query = sa.select(flow_runs.c.state_type).where(flow_runs.c.id == flow_run_id)
        if not self.is_sqlite:
            query = query.with_for_update()
        value = conn.execute(query).scalar()
        if value is None:
            raise ObjectNotFound(f"No flow run with id {flow_run_id}")
        return StateType(value)

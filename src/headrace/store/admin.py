"""Looking after a database over the years: deleting what is no longer wanted, and backups.

Deleting is refused while a runner may still act on what would be deleted: a run that
has not ended, a deployment with runs being executed. Runs are deleted in one place,
``_delete_runs``, with the rows of every table that refers to them
(``FLOW_RUN_DEPENDENTS``); retention deletes ended runs a batch at a time, each batch
one short transaction, so nobody waits long behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from headrace.exceptions import InvalidStateTransition, ObjectNotFound, StoreError
from headrace.states import ACTIVE_STATES, TERMINAL_STATES, StateType
from headrace.store.connection import SQLBase
from headrace.store.tables import FLOW_RUN_DEPENDENTS, deployments, flow_runs, task_cache

logger = logging.getLogger(__name__)

_ACTIVE = [s.value for s in ACTIVE_STATES]
_ENDED = [s.value for s in TERMINAL_STATES]

PRUNE_BATCH_RUNS = 500
"""Runs deleted per transaction: with their states and logs some 10-30 ms of SQLite's one
writer, which a trigger arriving meanwhile waits out."""
PRUNE_PAUSE_SECONDS = 0.05
"""The least pause between two batches (a pause is at least as long as the batch took):
others' writes go between them, and pruning takes at most half the database's time."""
PRUNE_LOCK = 0x68727072  # "hrpr": one PostgreSQL advisory lock, held by one pruner at a time
KEEP_FREE_PAGES = 2048
"""SQLite pages (8 MiB) left free after a batch for new runs to reuse; more is given back."""
RELEASE_PAGES_PER_BATCH = 2048
"""Free pages given back to the file system after one batch at most: a short step each."""


@dataclass(frozen=True)
class Pruned:
    """What a prune deleted (or, counted for a dry run, would delete)."""

    runs: int = 0
    dependents: dict[str, int] = field(default_factory=dict)
    """Rows deleted with the runs, by table (``logs``, ``flow_run_states``, ...)."""
    busy: bool = False
    """Another process held the prune lock (PostgreSQL): nothing was done."""
    seconds: float = 0.0
    """How long the database work took (not the wait for the store's thread)."""

    def __add__(self, other: Pruned) -> Pruned:
        tables = [*self.dependents, *(t for t in other.dependents if t not in self.dependents)]
        rows = {t: self.dependents.get(t, 0) + other.dependents.get(t, 0) for t in tables}
        both = self.busy and other.busy
        return Pruned(self.runs + other.runs, rows, both, self.seconds + other.seconds)


def _ended_before(cutoff: datetime) -> sa.ColumnElement[bool]:
    return (flow_runs.c.end_time < cutoff) & flow_runs.c.state_type.in_(_ENDED)


def _delete_runs(conn: sa.Connection, ids: Sequence[Any] | sa.Select[Any]) -> Pruned:
    """Delete runs (ids, or a query of them) and every row that refers to them, referring
    rows first."""
    dependents = {}
    for column in FLOW_RUN_DEPENDENTS:
        removed = conn.execute(column.table.delete().where(column.in_(ids))).rowcount
        dependents[column.table.name] = int(removed)
    runs = conn.execute(flow_runs.delete().where(flow_runs.c.id.in_(ids))).rowcount
    return Pruned(int(runs), dependents)


class Maintenance(SQLBase):
    """Deletions of deployments and ended runs, and the SQLite online backup."""

    def delete_flow_run(self, flow_run_id: UUID) -> None:
        """Delete an ended run with its state history, logs and all else that refers to it."""
        with self._write() as conn:
            state = self._current_state(conn, flow_run_id)
            if not state.is_terminal:
                raise InvalidStateTransition(
                    f"Flow run {flow_run_id} has not ended ({state.value}): cancel it first, "
                    "then delete it"
                )
            _delete_runs(conn, [flow_run_id])

    def prune_flow_runs(
        self, ended_before: datetime, *, limit: int = PRUNE_BATCH_RUNS, wait: bool = False
    ) -> Pruned:
        """Delete up to ``limit`` runs that ended before ``ended_before`` (oldest first), with
        all that refers to them, in one short transaction; fewer than ``limit``: none is left.

        One pruner at a time: on PostgreSQL a batch takes an advisory lock, and when another
        holds it returns ``busy`` at once (``wait``: waits for it); SQLite has one writer.
        On SQLite the batch gives back free pages past a reserve (``incremental_vacuum``).
        """
        started = time.monotonic()
        with self._write() as conn:
            if not self.is_sqlite:
                take = sa.func.pg_advisory_xact_lock if wait else sa.func.pg_try_advisory_xact_lock
                if conn.execute(sa.select(take(PRUNE_LOCK))).scalar() is False:
                    return Pruned(busy=True)
            query = sa.select(flow_runs.c.id).where(_ended_before(ended_before))
            query = query.order_by(flow_runs.c.end_time).limit(limit)
            if not self.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            ids = conn.execute(query).scalars().all()
            pruned = _delete_runs(conn, ids) if ids else Pruned()
        if self.is_sqlite and ids:
            self._release_free_pages()
        return dataclasses.replace(pruned, seconds=time.monotonic() - started)

    def _release_free_pages(self) -> None:
        """Give free pages past a reserve back to the file system, a transaction of its own:
        a database with ``auto_vacuum=INCREMENTAL`` (every one headrace creates) shrinks
        after a large prune; on others this does nothing, and new runs reuse the pages."""
        with self._errors(), self.engine.connect() as conn:
            free = int(conn.exec_driver_sql("PRAGMA freelist_count").scalar_one())
            excess = min(free - KEEP_FREE_PAGES, RELEASE_PAGES_PER_BATCH)
            if excess <= 0:
                return
            driver = conn.connection.driver_connection
            assert isinstance(driver, sqlite3.Connection)
            # executescript steps it to the end (execute() frees one page), outside any
            # transaction (autocommit: it is one of its own).
            driver.executescript(f"PRAGMA incremental_vacuum({excess})")

    def count_prunable(self, ended_before: datetime) -> Pruned:
        """What ``prune_flow_runs`` would delete, in all its batches, if called now."""
        ended = sa.select(flow_runs.c.id).where(_ended_before(ended_before))
        with self._read() as conn:
            runs = conn.execute(sa.select(sa.func.count()).select_from(ended.subquery()))
            dependents = {}
            for column in FLOW_RUN_DEPENDENTS:
                rows = sa.select(sa.func.count()).select_from(column.table)
                counted = conn.execute(rows.where(column.in_(ended))).scalar_one()
                dependents[column.table.name] = int(counted)
            return Pruned(int(runs.scalar_one()), dependents)

    def delete_deployment(self, deployment_id: UUID) -> int:
        """Delete a deployment and its runs that never started; its other runs stay readable
        (with no deployment). Refused while one of its runs is being executed.

        Returns how many queued runs were deleted with it.
        """
        with self._write() as conn:
            known = sa.select(deployments.c.id).where(deployments.c.id == deployment_id)
            if conn.execute(known).first() is None:
                raise ObjectNotFound(f"No deployment with id {deployment_id}")
            of_it = flow_runs.c.deployment_id == deployment_id
            active = conn.execute(
                sa.select(sa.func.count())
                .select_from(flow_runs)
                .where(of_it & flow_runs.c.state_type.in_(_ACTIVE))
            ).scalar_one()
            if active:
                raise InvalidStateTransition(
                    f"Deployment {deployment_id} has {active} flow run(s) being executed: "
                    "wait for them to end, or cancel them, then delete it"
                )
            queued = of_it & (flow_runs.c.state_type == StateType.SCHEDULED.value)
            removed = _delete_runs(conn, sa.select(flow_runs.c.id).where(queued)).runs
            conn.execute(deployments.delete().where(deployments.c.id == deployment_id))
            conn.execute(task_cache.delete().where(task_cache.c.scope == str(deployment_id)))
        logger.info("Deleted deployment %s and %d queued runs", deployment_id, removed)
        return int(removed)

    def backup(self, path: Path, *, overwrite: bool = False) -> None:
        """Copy a SQLite database to ``path`` while others keep writing (SQLite's online
        backup: a consistent snapshot). Written beside ``path`` first, then moved into
        place, so ``path`` is never a half-written copy."""
        if not self.is_sqlite:
            raise StoreError("Only a SQLite database is backed up by headrace: use pg_dump")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists: choose another path, or overwrite it")
        partial = path.with_name(f".{path.name}.partial")
        raw = self.engine.raw_connection()
        try:
            source = raw.driver_connection
            assert isinstance(source, sqlite3.Connection)
            target = sqlite3.connect(partial)
            try:
                source.backup(target)
            except sqlite3.Error as exc:
                raise StoreError(f"Could not back up the database to {path}: {exc}") from exc
            finally:
                target.close()
            os.replace(partial, path)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        finally:
            raw.close()

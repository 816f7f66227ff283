"""Looking after a database over the years: deleting what is no longer wanted, and backups.

Deleting is refused while a runner may still act on what would be deleted: a run that
has not ended, a deployment with runs being executed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from uuid import UUID

import sqlalchemy as sa

from headrace.exceptions import InvalidStateTransition, ObjectNotFound, StoreError
from headrace.states import ACTIVE_STATES, StateType
from headrace.store.connection import SQLBase
from headrace.store.tables import deployments, flow_runs, task_cache

logger = logging.getLogger(__name__)

_ACTIVE = [s.value for s in ACTIVE_STATES]


class Maintenance(SQLBase):
    """Deletions of deployments and ended runs, and the SQLite online backup."""

    def delete_flow_run(self, flow_run_id: UUID) -> None:
        """Delete an ended run with its state history and logs (they cascade)."""
        with self._write() as conn:
            state = self._current_state(conn, flow_run_id)
            if not state.is_terminal:
                raise InvalidStateTransition(
                    f"Flow run {flow_run_id} has not ended ({state.value}): cancel it first, "
                    "then delete it"
                )
            conn.execute(flow_runs.delete().where(flow_runs.c.id == flow_run_id))

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
            removed = conn.execute(flow_runs.delete().where(queued)).rowcount
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

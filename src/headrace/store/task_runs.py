"""Task runs and the task cache: written in batches as runs report them, read per run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from headrace.exceptions import ObjectNotFound, StoreError, StoreUnavailable
from headrace.jsonvalues import storable_dumps
from headrace.states import State
from headrace.store.connection import SQLBase
from headrace.store.records import MAX_PAGE
from headrace.store.tables import flow_runs, task_cache, task_runs
from headrace.task_runs import (
    TASK_CACHE_BYTES_PER_JOB,
    TASK_CACHE_ENTRIES_PER_JOB,
    TaskCacheEntry,
    TaskRun,
)

logger = logging.getLogger(__name__)

TASK_RUNS_PAGE = 10 * MAX_PAGE
"""Task runs one read returns at most (a run with more shows its first ones)."""


def _row(run: TaskRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow_run_id": run.flow_run_id,
        "name": run.name,
        "task_name": run.task_name,
        "state_type": run.state.type.value,
        "state_name": run.state.name,
        "state_message": run.state.message,
        "state_timestamp": run.state.timestamp,
        "run_count": run.run_count,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "cache_key": run.cache_key,
    }


def _task_run(values: dict[str, Any]) -> TaskRun:
    state = State(
        type=values.pop("state_type"),
        name=values.pop("state_name"),
        message=values.pop("state_message"),
        timestamp=values.pop("state_timestamp"),
    )
    return TaskRun(state=state, **values)


class TaskRuns(SQLBase):
    """Writes and reads of task runs and cached task results."""

    def write_task_runs(self, runs: Sequence[TaskRun]) -> int:
        """Store (or replace, by id) task runs in one transaction; returns how many were refused.

        Runs of several flow runs share a batch: when one is refused (its flow run was
        deleted), the others are written one by one.
        """
        if not runs:
            return 0
        try:
            with self._write() as conn:
                self._replace(conn, runs)
            return 0
        except StoreUnavailable:
            raise
        except StoreError:
            pass
        refused = 0
        with self._write() as conn:
            for run in runs:
                try:
                    with conn.begin_nested():
                        self._replace(conn, [run])
                except sa.exc.IntegrityError:
                    refused += 1
        if refused:
            logger.warning("Could not store %d task runs: their flow runs are gone", refused)
        return refused

    @staticmethod
    def _replace(conn: sa.Connection, runs: Sequence[TaskRun]) -> None:
        latest = {run.id: run for run in runs}
        conn.execute(task_runs.delete().where(task_runs.c.id.in_(list(latest))))
        conn.execute(task_runs.insert(), [_row(run) for run in latest.values()])

    def read_task_runs(self, flow_run_id: UUID) -> list[TaskRun]:
        """A flow run's task runs in the order they started; ObjectNotFound for an unknown run."""
        with self._read() as conn:
            known = conn.execute(sa.select(flow_runs.c.id).where(flow_runs.c.id == flow_run_id))
            if known.first() is None:
                raise ObjectNotFound(f"No flow run with id {flow_run_id}")
            rows = conn.execute(
                sa.select(task_runs)
                .where(task_runs.c.flow_run_id == flow_run_id)
                .order_by(task_runs.c.start_time, task_runs.c.name)
                .limit(TASK_RUNS_PAGE)
            ).all()
        return [_task_run(row._asdict()) for row in rows]

    def write_task_cache(self, entries: Sequence[TaskCacheEntry], now: datetime) -> None:
        """Keep these results under their keys (a later one replaces an earlier one), and drop
        the entries of their scopes that have expired."""
        if not entries:
            return
        latest = {(e.scope, e.key): e for e in entries}
        with self._write() as conn:
            for scope in {e.scope for e in entries}:
                conn.execute(
                    task_cache.delete().where(
                        (task_cache.c.scope == scope)
                        & (
                            task_cache.c.key.in_([k for s, k in latest if s == scope])
                            | (task_cache.c.expires <= now)
                        )
                    )
                )
            conn.execute(
                task_cache.insert(),
                [{**e.model_dump(), "created": now} for e in latest.values()],
            )

    def read_task_cache(self, scope: str, now: datetime) -> dict[str, tuple[Any, float | None]]:
        """The scope's live entries, newest first, as many as a run's process is handed
        (``TASK_CACHE_ENTRIES_PER_JOB`` and ``TASK_CACHE_BYTES_PER_JOB``)."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(task_cache.c.key, task_cache.c.result, task_cache.c.expires)
                .where(
                    (task_cache.c.scope == scope)
                    & (task_cache.c.expires.is_(None) | (task_cache.c.expires > now))
                )
                .order_by(task_cache.c.created.desc())
                .limit(TASK_CACHE_ENTRIES_PER_JOB)
            ).all()
        entries: dict[str, tuple[Any, float | None]] = {}
        budget = TASK_CACHE_BYTES_PER_JOB
        for key, result, expires in rows:
            budget -= len(storable_dumps(result)) + len(key)
            if budget < 0:
                break
            entries[key] = (result, None if expires is None else expires.timestamp())
        return entries

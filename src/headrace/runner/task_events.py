"""Task runs on their way to the store, and the task cache on its way to a run's process.

A run's process reports each task run as it starts, retries and ends
(``TaskRunUpdate``) and each result to cache (``TaskCached``), in batches
(``TaskRunEvents``). Here they are collected, the latest update of a task run
winning, and written in batches too:
a thousand task calls cost a few transactions, not two thousand. Before a
run's end is recorded its batch is written (``flush``), so a retry of the run
is handed the results its first attempt cached.

The process cannot read the cache itself (it never opens the database), so
``job_with_cache`` gives it the live entries of its deployment with its job,
bounded by ``TASK_CACHE_ENTRIES_PER_JOB`` and ``TASK_CACHE_BYTES_PER_JOB``.
Most deployments cache nothing: a scope found empty is not read again for
``EMPTY_RECHECK_SECONDS`` unless this runner stores an entry for it, so a run
start costs no query then. (A result another runner cached in that window is
missed once: the task runs again, which is always correct.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TypeVar
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.process.protocol import ChildJob, TaskCached, TaskRunEvents, TaskRunUpdate
from headrace.runner.batching import DelayedFlush
from headrace.states import State, StateType, utcnow
from headrace.store import AsyncStore
from headrace.task_runs import TaskCacheEntry, TaskRun, cache_scope

logger = logging.getLogger(__name__)

E = TypeVar("E")
M = TypeVar("M")

FLUSH_INTERVAL_SECONDS = 0.2
EMPTY_RECHECK_SECONDS = 2.0
FLUSH_BATCH = 1000


def _time(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def task_run_of(run: FlowRun, event: TaskRunUpdate) -> TaskRun:
    """The task run an update describes, as stored: under the run whose body called it
    (``run``, whose process reported it, or one of its subflows' runs)."""
    state = State(
        type=StateType(event.state_type),
        name=event.state_name,
        message=event.message,
        timestamp=_time(event.end_time) or utcnow(),
    )
    return TaskRun(
        id=UUID(event.id),
        flow_run_id=run.id if event.flow_run_id is None else UUID(event.flow_run_id),
        name=event.name,
        task_name=event.task_name,
        state=state,
        run_count=event.run_count,
        start_time=_time(event.start_time),
        end_time=_time(event.end_time),
        cache_key=event.cache_key,
    )


def cache_entry_of(run: FlowRun, event: TaskCached) -> TaskCacheEntry:
    """The cache entry a run's process sent, kept for the runs of its deployment."""
    scope = cache_scope(run.deployment_id, run.flow_name)
    return TaskCacheEntry(
        scope=scope, key=event.key, result=event.result, expires=_time(event.expires)
    )


def _models(events: Iterable[tuple[FlowRun, E]], model: Callable[[FlowRun, E], M]) -> list[M]:
    """Each event as its model; one that makes no sense (a bad id, say) is logged and dropped."""
    models = []
    for run, event in events:
        try:
            models.append(model(run, event))
        except (ValueError, TypeError) as exc:
            logger.warning("Ignored a task event of %s that made no sense: %s", run.name, exc)
    return models


Created = Callable[[FlowRun, str], asyncio.Task[None] | None]
"""The write creating a subflow run of a run (by the ids its process told), or None when
the run has no such subflow."""


class TaskRunSink(DelayedFlush):
    """Collects the task events of every run's process and stores them in few transactions."""

    def __init__(self, store: AsyncStore, subflow_created: Created | None = None) -> None:
        self._store = store
        self._subflow_created = subflow_created
        self._creations: set[asyncio.Task[None]] = set()
        """Subflow runs being created whose task runs wait to be written: they go first."""
        self._runs: dict[tuple[UUID, str], tuple[FlowRun, TaskRunUpdate]] = {}
        self._cache: list[tuple[FlowRun, TaskCached]] = []
        self._open: dict[UUID, dict[str, TaskRunUpdate]] = {}
        """Per flow run, its task runs (and its subflows' runs' ones) that have not ended."""
        self._empty_until: dict[str, float] = {}
        """Scopes whose cache was found empty, until when (monotonic) that is believed."""
        super().__init__()
        self._lock = asyncio.Lock()

    def add(self, run: FlowRun, events: TaskRunEvents) -> None:
        """Queue a batch of ``run``'s process; models are built when they are written."""
        open_ones = self._open.setdefault(run.id, {})
        for update in events.updates:
            update = self._owned(run, update)
            self._runs[(run.id, update.id)] = (run, update)
            if update.end_time is None:
                open_ones[update.id] = update
            else:
                open_ones.pop(update.id, None)
        self._cache.extend((run, entry) for entry in events.cached)
        if len(self._runs) + len(self._cache) >= FLUSH_BATCH:
            self._schedule(0)
        elif self._flush_task is None:
            self._schedule(FLUSH_INTERVAL_SECONDS)

    def _owned(self, run: FlowRun, update: TaskRunUpdate) -> TaskRunUpdate:
        """``update`` told of a task of ``run`` or of one of its subflows' runs (whose
        creation its write then waits for); of any other run, it is ``run``'s own."""
        owner = update.flow_run_id
        if owner is None or owner == str(run.id):
            return update._replace(flow_run_id=None)
        created = None if self._subflow_created is None else self._subflow_created(run, owner)
        if created is None:
            logger.warning("Flow run %s told of a task of an unknown run %s", run.name, owner)
            return update._replace(flow_run_id=None)
        if not created.done():
            self._creations.add(created)
        return update

    def end_attempt(self, run: FlowRun) -> None:
        """The run's process has ended: its task runs that had not are CRASHED now (a flow
        that returned without waiting for a submitted task, a killed process)."""
        open_ones = self._open.pop(run.id, None)
        if not open_ones:
            return
        now = time.time()
        message = "Its flow run's process ended before this task run did"
        crashed = [
            u._replace(state_type="CRASHED", state_name="Crashed", end_time=now, message=message)
            for u in open_ones.values()
        ]
        self.add(run, TaskRunEvents(crashed, []))
        self._open.pop(run.id, None)

    async def flush(self) -> None:
        """Write everything collected so far (a run's task runs land before its end)."""
        async with self._lock:
            creations, self._creations = self._creations, set()
            await asyncio.gather(*creations, return_exceptions=True)
            runs = _models(self._runs.values(), task_run_of)
            cache = _models(self._cache, cache_entry_of)
            for entry in cache:
                self._empty_until.pop(entry.scope, None)
            self._runs, self._cache = {}, []
            try:
                if cache:
                    await self._store.write_task_cache(cache, utcnow())
                if runs:
                    await self._store.write_task_runs(runs)
            except Exception:
                logger.exception(
                    "Could not store %d task runs and %d cached results", len(runs), len(cache)
                )

    async def job_with_cache(self, job: ChildJob, run: FlowRun) -> ChildJob:
        """``job`` with the live task cache entries of ``run``'s deployment (none if the
        database cannot say: the tasks then run again, which is always correct)."""
        scope = cache_scope(run.deployment_id, run.flow_name)
        if self._empty_until.get(scope, 0.0) > time.monotonic():
            return job
        try:
            entries = await self._store.read_task_cache(scope, utcnow())
        except Exception as exc:
            logger.warning("Could not read the task cache for %s: %s", run.name, exc)
            return job
        if not entries:
            self._empty_until[scope] = time.monotonic() + EMPTY_RECHECK_SECONDS
            return job
        return dataclasses.replace(job, task_cache=entries)

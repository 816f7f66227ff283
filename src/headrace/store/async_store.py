"""``AsyncStore``: the SQL store's methods as coroutines, run on the store's own threads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

from headrace.deployments import Deployment, DeploymentSpec
from headrace.flow_runs import FlowRun, LogRecord, NewFlowRun
from headrace.settings import Settings
from headrace.states import State, StateType
from headrace.store.changes import ChangeFeed
from headrace.store.checkpoints import Checkpointer
from headrace.store.group_commit import GroupCommit
from headrace.store.records import MAX_PAGE, RunnerRecord
from headrace.store.sql import Attempt, SQLStore, StateChange
from headrace.store.threads import BACKGROUND, DISPATCH, URGENT, StoreWorker

P = ParamSpec("P")
T = TypeVar("T")

POSTGRES_THREADS = 8
STATE_CHANGE_BATCH = 4
"""State changes per bookkeeping transaction: small, so a trigger waits for at most one
short batch on the SQLite store's single thread, not for a long one."""


def open_store(settings: Settings) -> AsyncStore:
    """Open (and migrate, on first use) the database the settings name."""
    return AsyncStore(SQLStore(settings.resolved_database_url))


class AsyncStore:
    """The store for async code: same methods, awaited; blocking work stays off the loop."""

    def __init__(self, store: SQLStore) -> None:
        self.sync = store
        self.changes = ChangeFeed(store.engine)
        """News of runs queued or cancelled, for the runners serving this database."""
        # SQLite: one thread (one writer), urgent work first. PostgreSQL: a pool for
        # urgent work, and one thread for claims and bookkeeping, so those never hold
        # more than one thread's share of the GIL while a caller waits.
        self._worker = StoreWorker() if store.is_sqlite else None
        self._pool = None if store.is_sqlite else ThreadPoolExecutor(POSTGRES_THREADS)
        self._bookkeeping = None if store.is_sqlite else StoreWorker("headrace-store-background")
        wanted = Checkpointer.wanted(store.engine)
        self._checkpoints = Checkpointer(store.engine) if wanted else None
        self._creations = GroupCommit(store.create_flow_runs_each, self._submit)
        self._state_changes: GroupCommit[StateChange, FlowRun] = GroupCommit(
            store.set_states,
            functools.partial(self._submit, priority=BACKGROUND),
            max_batch=STATE_CHANGE_BATCH,
        )

    def _submit(self, fn: Callable[[], T], priority: int = URGENT) -> Future[T]:
        if self._worker is not None:
            return self._worker.submit(fn, priority)
        if priority != URGENT and self._bookkeeping is not None:
            return self._bookkeeping.submit(fn, priority)
        assert self._pool is not None
        return self._pool.submit(fn)

    async def _at(self, priority: int, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await asyncio.wrap_future(self._submit(call, priority))

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._at(URGENT, fn, *args, **kwargs)

    async def _background(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Work nobody is waiting on: it yields the store to urgent work."""
        return await self._at(BACKGROUND, fn, *args, **kwargs)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
        if self._bookkeeping is not None:
            self._bookkeeping.shutdown(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._checkpoints is not None:
            self._checkpoints.close()
        self.sync.close()

    async def upsert_deployment(self, spec: DeploymentSpec) -> Deployment:
        return await self._call(self.sync.upsert_deployment, spec)

    async def read_deployment(self, deployment_id: UUID) -> Deployment:
        return await self._call(self.sync.read_deployment, deployment_id)

    async def read_deployment_by_name(self, flow_name: str, name: str) -> Deployment:
        return await self._call(self.sync.read_deployment_by_name, flow_name, name)

    async def read_deployments(self, ids: Collection[UUID] | None = None) -> list[Deployment]:
        return await self._call(self.sync.read_deployments, ids)

    async def create_flow_run(self, new: NewFlowRun) -> tuple[FlowRun, bool]:
        """Store a run; concurrent creations share one transaction."""
        run, created = await self._creations.submit(new)
        if created:
            self.changes.publish("created")
        return run, created

    async def read_flow_run_by_key(self, new: NewFlowRun) -> FlowRun | None:
        return await self._call(self.sync.read_flow_run_by_key, new)

    async def create_planned_runs(self, runs: Sequence[NewFlowRun]) -> int:
        return await self._call(self.sync.create_planned_runs, runs)

    async def create_flow_runs(self, runs: Sequence[NewFlowRun]) -> list[tuple[FlowRun, bool]]:
        return await self._call(self.sync.create_flow_runs, runs)

    async def last_planned_times(
        self, deployment_id: UUID, schedule_keys: Collection[str]
    ) -> dict[str, datetime]:
        return await self._call(self.sync.last_planned_times, deployment_id, schedule_keys)

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        return await self._call(self.sync.read_flow_run, flow_run_id)

    async def taken_among(self, ids: Collection[UUID], runner_id: UUID) -> list[UUID]:
        return await self._background(self.sync.taken_among, ids, runner_id)

    async def cancelling_among(self, ids: Collection[UUID]) -> list[UUID]:
        """Which of these runs have been asked to cancel.

        A runner asks this often and nobody waits on the answer: it yields the store.
        """
        return await self._background(self.sync.cancelling_among, ids)

    async def read_flow_runs(
        self,
        *,
        ids: Collection[UUID] | None = None,
        deployment_id: UUID | None = None,
        flow_name: str | None = None,
        states: Collection[StateType] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[FlowRun]:
        return await self._call(
            self.sync.read_flow_runs,
            ids=ids,
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=states,
            limit=limit,
            offset=offset,
        )

    async def count_queued_runs(
        self, deployment_ids: Collection[UUID], runner_name: str | None, *, cap: int
    ) -> int:
        return await self._call(self.sync.count_queued_runs, deployment_ids, runner_name, cap=cap)

    async def count_active_runs(self, deployment_ids: Collection[UUID]) -> dict[UUID, int]:
        return await self._call(self.sync.count_active_runs, deployment_ids)

    async def claim_runs(
        self,
        *,
        deployment_ids: Collection[UUID],
        runner: RunnerRecord,
        limit: int,
        now: datetime | None = None,
        concurrency_limits: Mapping[UUID, int] | None = None,
    ) -> list[FlowRun]:
        return await self._at(
            DISPATCH,
            self.sync.claim_runs,
            deployment_ids=deployment_ids,
            runner=runner,
            limit=limit,
            now=now,
            concurrency_limits=concurrency_limits,
        )

    async def claim_flow_run(self, flow_run_id: UUID, runner: RunnerRecord) -> FlowRun:
        return await self._call(self.sync.claim_flow_run, flow_run_id, runner)

    async def next_due_time(
        self,
        deployment_ids: Collection[UUID],
        runner_name: str | None,
        after: datetime | None = None,
    ) -> datetime | None:
        return await self._call(self.sync.next_due_time, deployment_ids, runner_name, after)

    async def set_state(
        self,
        flow_run_id: UUID,
        state: State,
        *,
        expected: Collection[StateType] | None = None,
        attempt: Attempt | None = None,
        **fields: Any,
    ) -> FlowRun:
        """Change a run's state; concurrent changes share one transaction."""
        return await self.queue_state(
            flow_run_id, state, expected=expected, attempt=attempt, **fields
        )

    def queue_state(
        self,
        flow_run_id: UUID,
        state: State,
        *,
        expected: Collection[StateType] | None = None,
        attempt: Attempt | None = None,
        **fields: Any,
    ) -> asyncio.Future[FlowRun]:
        """Queue a state change now, without waiting: changes queued later are written after it."""
        change = StateChange(flow_run_id, state, expected, fields, attempt)
        return self._state_changes.enqueue(change)

    async def request_cancellation(self, flow_run_id: UUID) -> FlowRun:
        run = await self._call(self.sync.request_cancellation, flow_run_id)
        self.changes.publish("cancelled")
        return run

    async def read_state_history(self, flow_run_id: UUID) -> list[State]:
        return await self._call(self.sync.read_state_history, flow_run_id)

    async def write_logs(self, records: Sequence[LogRecord]) -> None:
        await self._background(self.sync.write_logs, records)

    async def read_logs(
        self, flow_run_id: UUID, *, after_id: int = 0, limit: int = MAX_PAGE
    ) -> list[LogRecord]:
        return await self._call(self.sync.read_logs, flow_run_id, after_id=after_id, limit=limit)

    async def register_runner(self, runner: RunnerRecord) -> None:
        await self._call(self.sync.register_runner, runner)

    async def heartbeat(self, runner_id: UUID, *, stopped: bool = False) -> None:
        await self._background(self.sync.heartbeat, runner_id, stopped=stopped)

    async def read_active_runs(
        self, deployment_ids: Collection[UUID], runner_name: str | None
    ) -> list[tuple[FlowRun, RunnerRecord | None]]:
        return await self._call(self.sync.read_active_runs, deployment_ids, runner_name)

"""``AsyncStore``: the SQL store's methods as coroutines, run on the store's own threads.

Most methods are one line in a table: the ``SQLStore`` method, and the priority
it runs at on the store's threads (``URGENT``: somebody waits; ``DISPATCH``:
claims; ``BACKGROUND``: bookkeeping nobody waits on, which yields the store;
``UPKEEP``: deleting old runs, when nothing else waits).
Writes that many callers make at once share transactions (group commit) and
are written out by hand below the table.

Inside ``bounded_waits()`` (the webserver wraps each request in it) a caller
waits for the store at most the store's timeout, then gets ``StoreTimeout``:
a database gone silent never holds a request. The work itself is not
abandoned: queued work is dropped, a statement already sent ends as the
database and the connection's own timeouts decide.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Concatenate, ParamSpec, TypeVar
from uuid import UUID

from headrace.exceptions import StoreTimeout
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.states import State, StateType
from headrace.store.changes import ChangeFeed
from headrace.store.checkpoints import Checkpointer
from headrace.store.group_commit import GroupCommit
from headrace.store.records import Attempt, StateChange
from headrace.store.sql import SQLStore
from headrace.store.threads import BACKGROUND, DISPATCH, UPKEEP, URGENT, StoreWorker

P = ParamSpec("P")
T = TypeVar("T")

POSTGRES_THREADS = 8
STATE_CHANGE_BATCH = 4
"""State changes per bookkeeping transaction: small, so a trigger waits for at most one
short batch on the SQLite store's single thread, not for a long one."""
UNKNOWN_CREATION = (
    "; the run may still be created: repeat the request with the same Idempotency-Key "
    "to get it without a second run"
)

_bounded: ContextVar[bool] = ContextVar("headrace_store_bounded", default=False)


@contextmanager
def bounded_waits() -> Iterator[None]:
    """Within this (a request), each wait for the store ends with ``StoreTimeout`` after the
    store's timeout, rather than lasting as long as a silent database does."""
    token = _bounded.set(True)
    try:
        yield
    finally:
        _bounded.reset(token)


def _threaded(
    priority: int, method: Callable[Concatenate[SQLStore, P], T]
) -> Callable[Concatenate[AsyncStore, P], Awaitable[T]]:
    """``method`` of the SQL store as a coroutine method, run at ``priority`` off the loop.

    The method is looked up on the wrapped store at each call, as ``self.sync.name``
    would be: a subclass's (or an instance's) own version is the one that runs.
    """
    name = method.__name__

    async def call(self: AsyncStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        bound: Callable[P, T] = getattr(self.sync, name)
        work = functools.partial(bound, *args, **kwargs)
        return await self._wait(asyncio.wrap_future(self._submit(work, priority)))

    call.__name__ = name
    call.__qualname__ = f"AsyncStore.{name}"
    call.__doc__ = method.__doc__
    return call


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

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        call = functools.partial(fn, *args, **kwargs)
        return await self._wait(asyncio.wrap_future(self._submit(call, URGENT)))

    async def _wait(self, future: asyncio.Future[T], unknown_outcome: str = "") -> T:
        """``future``'s result, waited for at most the store's timeout in ``bounded_waits()``."""
        timeout = self.sync.timeout_seconds
        if timeout is None or not _bounded.get():
            return await future
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            text = f"The database did not answer within {timeout:g} s{unknown_outcome}"
            raise StoreTimeout(text) from None

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

    # -- deployments --------------------------------------------------------
    upsert_deployment = _threaded(URGENT, SQLStore.upsert_deployment)
    read_deployment = _threaded(URGENT, SQLStore.read_deployment)
    read_deployment_by_name = _threaded(URGENT, SQLStore.read_deployment_by_name)
    read_deployments = _threaded(URGENT, SQLStore.read_deployments)
    set_deployment_paused = _threaded(URGENT, SQLStore.set_deployment_paused)
    delete_deployment = _threaded(URGENT, SQLStore.delete_deployment)

    # -- runs ---------------------------------------------------------------
    read_flow_run_by_key = _threaded(URGENT, SQLStore.read_flow_run_by_key)
    create_planned_runs = _threaded(URGENT, SQLStore.create_planned_runs)
    create_flow_runs = _threaded(URGENT, SQLStore.create_flow_runs)
    last_planned_times = _threaded(URGENT, SQLStore.last_planned_times)
    read_flow_run = _threaded(URGENT, SQLStore.read_flow_run)
    read_flow_runs = _threaded(URGENT, SQLStore.read_flow_runs)
    count_flow_runs = _threaded(URGENT, SQLStore.count_flow_runs)
    delete_flow_run = _threaded(URGENT, SQLStore.delete_flow_run)
    create_child_flow_run = _threaded(URGENT, SQLStore.create_child_flow_run)
    restart_child_flow_run = _threaded(URGENT, SQLStore.restart_child_flow_run)
    prune_flow_runs = _threaded(UPKEEP, SQLStore.prune_flow_runs)

    # -- states -------------------------------------------------------------
    schema_is_current = _threaded(URGENT, SQLStore.schema_is_current)
    read_state_history = _threaded(URGENT, SQLStore.read_state_history)
    cancelling_among = _threaded(BACKGROUND, SQLStore.cancelling_among)
    cancel_asked_among = _threaded(BACKGROUND, SQLStore.cancel_asked_among)
    taken_among = _threaded(BACKGROUND, SQLStore.taken_among)

    # -- claims -------------------------------------------------------------
    claim_runs = _threaded(DISPATCH, SQLStore.claim_runs)
    claim_flow_run = _threaded(URGENT, SQLStore.claim_flow_run)
    count_queued_runs = _threaded(URGENT, SQLStore.count_queued_runs)
    count_active_runs = _threaded(URGENT, SQLStore.count_active_runs)
    next_due_time = _threaded(URGENT, SQLStore.next_due_time)

    # -- logs ---------------------------------------------------------------
    write_logs = _threaded(BACKGROUND, SQLStore.write_logs)
    read_logs = _threaded(URGENT, SQLStore.read_logs)

    # -- webhook deliveries -------------------------------------------------
    record_delivery = _threaded(BACKGROUND, SQLStore.record_delivery)
    read_deliveries = _threaded(URGENT, SQLStore.read_deliveries)
    # -- task runs ----------------------------------------------------------
    write_task_runs = _threaded(BACKGROUND, SQLStore.write_task_runs)
    read_task_runs = _threaded(URGENT, SQLStore.read_task_runs)
    write_task_cache = _threaded(BACKGROUND, SQLStore.write_task_cache)
    read_task_cache = _threaded(URGENT, SQLStore.read_task_cache)

    # -- runners ------------------------------------------------------------
    register_runner = _threaded(URGENT, SQLStore.register_runner)
    heartbeat = _threaded(BACKGROUND, SQLStore.heartbeat)
    read_serving_runners = _threaded(URGENT, SQLStore.read_serving_runners)
    read_active_runs = _threaded(URGENT, SQLStore.read_active_runs)
    read_live_runner = _threaded(URGENT, SQLStore.read_live_runner)
    read_runner = _threaded(URGENT, SQLStore.read_runner)
    read_addressed_runs = _threaded(BACKGROUND, SQLStore.read_addressed_runs)
    readdress_flow_run = _threaded(BACKGROUND, SQLStore.readdress_flow_run)

    # -- the dashboard -----------------------------------------------------
    read_runners = _threaded(URGENT, SQLStore.read_runners)
    count_running_by_runner = _threaded(URGENT, SQLStore.count_running_by_runner)
    read_served_deployment_ids = _threaded(URGENT, SQLStore.read_served_deployment_ids)
    count_due_runs = _threaded(URGENT, SQLStore.count_due_runs)
    count_ended_by_hour = _threaded(URGENT, SQLStore.count_ended_by_hour)
    read_recent_failures = _threaded(URGENT, SQLStore.read_recent_failures)
    read_next_scheduled = _threaded(URGENT, SQLStore.read_next_scheduled)
    read_latest_runs = _threaded(URGENT, SQLStore.read_latest_runs)
    read_next_run_times = _threaded(URGENT, SQLStore.read_next_run_times)
    read_run_page = _threaded(URGENT, SQLStore.read_run_page)
    read_run_briefs = _threaded(URGENT, SQLStore.read_run_briefs)
    read_deployment_page = _threaded(URGENT, SQLStore.read_deployment_page)
    read_deployment_names = _threaded(URGENT, SQLStore.read_deployment_names)
    read_child_runs = _threaded(URGENT, SQLStore.read_child_runs)
    last_changes = _threaded(URGENT, SQLStore.last_changes)

    # -- written by hand: group commit, and cancellation (both publish changes) --

    async def create_flow_run(self, new: NewFlowRun) -> tuple[FlowRun, bool]:
        """Store a run; concurrent creations share one transaction."""
        run, created = await self._wait(self._creations.enqueue(new), UNKNOWN_CREATION)
        if created:
            self.changes.publish("created")
        return run, created

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

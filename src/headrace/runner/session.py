"""A runner's session: the parts that exist from ``async with runner`` to its end.

Opening registers the runner, starts its process starter and log sink, builds
the dispatcher (over the executor) and liveness, and subscribes to the store's
change feed. Three loops then drive them: the poll, the dispatcher and the
cancellation watch, and (``HEADRACE_RETENTION_DAYS``) retention's pruning.
Closing drains the runs in flight, then takes it all down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from headrace.exceptions import StoreError
from headrace.process.starter import ForkServerStarter, ProcessStarter
from headrace.runner.dispatch import Dispatcher
from headrace.runner.drain import drain
from headrace.runner.endings import Endings
from headrace.runner.journal import Journal
from headrace.runner.lease import Lease
from headrace.runner.liveness import Liveness
from headrace.runner.logsink import LogSink
from headrace.runner.metrics import RunObserver
from headrace.runner.poller import Poller
from headrace.runner.retention import Pruner
from headrace.runner.scheduling import plan_scheduled_runs
from headrace.runner.served import ServedDeployments
from headrace.runner.subflow_events import run_environment
from headrace.runner.webhooks import STOP_WAIT_SECONDS, Webhooks, webhook_policy
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.store import AsyncStore, RunnerRecord
from headrace.store.changes import Wake

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionOptions:
    """What an open runner is called, how much it runs at once and how often it does what."""

    name: str
    limit: int
    poll_seconds: float
    dispatch_seconds: float
    cancel_check_seconds: float
    kill_grace_seconds: float
    settings: Settings
    observers: tuple[RunObserver, ...] = ()
    """Told of each run's start and end: the metrics, a console."""


class Session:
    """An open runner's parts and loops: poll, dispatch, cancellation watch; then its drain."""

    def __init__(
        self,
        store: AsyncStore,
        served: ServedDeployments,
        starter: ProcessStarter | None,
        options: SessionOptions,
        on_polled: Callable[[datetime], None],
    ) -> None:
        self.store = store
        # With its limits: for every dashboard and trigger route over the database.
        self.record = RunnerRecord(
            name=options.name,
            process_limit=options.limit,
            backlog_limit=options.settings.runner_backlog_limit,
        )
        self.starter = starter or ForkServerStarter(served.entrypoints())
        self._opens_starter = starter is None
        self._served = served
        self._options = options
        self._unsubscribe: Callable[[], None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._cancel_watch: asyncio.Task[None] | None = None
        self._drained = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_polled = on_polled
        self._next_poll_delay = options.poll_seconds
        self.poll = Poller("poll", self._poll_step, lambda: self._next_poll_delay)
        self.logs = LogSink(
            store,
            run_limit_bytes=options.settings.run_log_limit_bytes,
            line_limit_chars=options.settings.log_line_limit_chars,
        )
        self.journal = Journal(options.settings.home, self.record)
        settings = options.settings
        lease = Lease(settings.runner_heartbeat_timeout_seconds)
        self.dispatcher = self._dispatcher(served, lease)
        webhooks = Webhooks(store, webhook_policy(settings))
        self.endings = Endings(store, served, webhooks, self.logs)
        self.dispatcher.executor.on_ended = self.endings.ended
        self.dispatcher.executor.environment = run_environment(settings)
        self.liveness = self._liveness(served, lease)
        keep_for = settings.retention
        self.pruner = None if keep_for is None else Pruner(store, keep_for)

    def _dispatcher(self, served: ServedDeployments, lease: Lease) -> Dispatcher:
        options = self._options
        return Dispatcher(
            self.store,
            served,
            self.record,
            starter=self.starter,
            logs=self.logs,
            limit=options.limit,
            kill_grace_seconds=options.kill_grace_seconds,
            interval_seconds=options.dispatch_seconds,
            replan=self.poll.wake,
            journal=self.journal,
            lease=lease,
            observers=options.observers,
        )

    def _liveness(self, served: ServedDeployments, lease: Lease) -> Liveness:
        settings = self._options.settings
        options = self._options
        return Liveness(
            self.store,
            self.record,
            served,
            self.dispatcher.executor,
            self.dispatcher.claim_lock,
            heartbeat_timeout_seconds=settings.runner_heartbeat_timeout_seconds,
            poll_seconds=options.poll_seconds,
            cancel_check_seconds=options.cancel_check_seconds,
            journal=self.journal,
            lease=lease,
            lease_margin_seconds=settings.runner_lease_margin_seconds,
        )

    @property
    def pollers(self) -> tuple[Poller, Poller, Poller]:
        return (self.poll, self.dispatcher.poller, self.liveness.poller)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._opens_starter and isinstance(self.starter, ForkServerStarter):
            await self.starter.open()
        self.journal.open()
        await self.store.register_runner(self.record)
        # The lease: nothing is claimed without it. A database that fails now fails the
        # poll's heartbeat too, which retries until it holds.
        with contextlib.suppress(StoreError):
            await self.liveness.heartbeat()
        self._unsubscribe = self.store.changes.subscribe(self.wake)

    def wake(self, why: Wake) -> None:
        """A run to claim wakes the dispatcher, a cancel the cancellation watch (thread-safe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop(loop):
            (self.dispatcher.poller if why == "created" else self.liveness.poller).wake()
        else:
            loop.call_soon_threadsafe(self.wake, why)

    async def _poll_step(self) -> None:
        await self.liveness.on_poll()
        await self._served.refresh(self.store)
        await plan_scheduled_runs(self.store, list(self._served.deployments.values()))
        claimed_at = utcnow()
        await self.dispatcher.claim_and_launch()
        await self.liveness.check_runs()
        self._on_polled(utcnow())
        delay = self.dispatcher.delay_until_next_due(claimed_at, self._options.poll_seconds)
        self._next_poll_delay = await delay

    async def run_loops(self) -> None:
        """The poll, the dispatcher and retention until stopped; the cancellation watch
        (with the heartbeat) and the change feed go on through the drain, until closed."""
        self._watch = asyncio.create_task(self._watch_changes())
        self._cancel_watch = asyncio.create_task(self.liveness.poller.run())
        async with asyncio.TaskGroup() as group:
            for poller in self._stopped_first():
                group.create_task(poller.run())

    async def _watch_changes(self) -> None:
        """Wake at once for runs queued or cancelled by other processes (else: the polls)."""
        try:
            await self.store.changes.watch()
        except Exception:
            logger.exception("Watching the database for other processes' runs failed")

    def _stopped_first(self) -> list[Poller]:
        """What stops when the runner does: claiming, planning, retention. Not the
        cancellation watch: a drain can outlast the heartbeat timeout, and its runs can
        still be cancelled."""
        retention = [] if self.pruner is None else [self.pruner.poller]
        return [self.poll, self.dispatcher.poller, *retention]

    def stop(self) -> None:
        self.liveness.draining = True
        for poller in self._stopped_first():
            poller.stop()

    async def drain(self, hurry: asyncio.Event) -> None:
        """Stop claiming, then finish, requeue or cancel the runs in flight (once)."""
        if self._drained:
            return
        self.stop()
        grace = self._options.settings.runner_shutdown_grace_seconds
        try:
            await drain(
                self.dispatcher.executor, self._served.on_shutdown, grace_seconds=grace, hurry=hurry
            )
            self._drained = True
        finally:
            if self._unsubscribe is not None:
                self._unsubscribe()
            self.liveness.poller.stop()
            if self._cancel_watch is not None:
                await self._cancel_watch  # it ends its step, then stops
            if self._watch is not None:
                await stop_task(self._watch)

    async def close(self, hurry: asyncio.Event) -> None:
        """Drain the runs in flight, then stop the log sink and the process starter."""
        await self.drain(hurry)
        grace = self._options.settings.runner_shutdown_grace_seconds
        await self.endings.close(min(grace, STOP_WAIT_SECONDS))
        self.liveness.close()
        await self.logs.close()
        with contextlib.suppress(Exception):
            await self.store.heartbeat(self.record.id, stopped=True)
        await self.starter.close()
        self.journal.close()


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

"""``Runner``: serves deployments, claims their runs and executes each in its own process.

The runner composes named parts: pollers (``poller.py``), the executor
(``executor.py``), the process starter (``processes.py``), the log sink and
crash recovery. It owns only the wiring and the lifecycle: open, poll, drain.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import UUID

from typing_extensions import Unpack

from headrace.client import add_wakeup, remove_wakeup
from headrace.deployments import Deployment, DeploymentOptions, OnShutdown, RunnerDeployment
from headrace.flow_runs import FlowRun
from headrace.names import default_runner_name
from headrace.process.starter import ForkServerStarter, ProcessStarter
from headrace.runner.executor import Executor
from headrace.runner.logsink import LogSink
from headrace.runner.outcomes import KillReason
from headrace.runner.poller import Poller
from headrace.runner.recovery import recover_orphans
from headrace.runner.serving import settle_heap
from headrace.settings import Settings, load_settings
from headrace.states import StateType, utcnow
from headrace.store import AsyncStore, RunnerRecord, open_store
from headrace.store.changes import Wake

if TYPE_CHECKING:
    from headrace.flows import Flow

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

CANCEL_CHECK_SECONDS = 0.5
DISPATCH_SECONDS = 1.0
"""Runs queued by other processes (the CLI, other clients) start within this long."""
RECOVERY_EVERY_POLLS = 6


class Runner:
    """Serves deployments: claims their runs and executes each in a child process."""

    def __init__(
        self,
        name: str | None = None,
        query_seconds: float | None = None,
        limit: int | None = None,
        webserver: bool = False,
        *,
        settings: Settings | None = None,
        starter: ProcessStarter | None = None,
        handle_signals: bool = True,
        kill_grace_seconds: float | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.name = name or default_runner_name()
        self.query_seconds = float(query_seconds or self.settings.runner_poll_frequency)
        self.limit = int(limit if limit is not None else self.settings.runner_process_limit)
        self.webserver = webserver or self.settings.runner_server_enable
        self.handle_signals = handle_signals
        self.kill_grace_seconds = kill_grace_seconds if kill_grace_seconds is not None else 10.0
        self.last_polled: datetime | None = None
        self.deployments: dict[UUID, Deployment] = {}
        self.flows: dict[UUID, Flow[Any, Any]] = {}
        self.record = RunnerRecord(name=self.name)
        self._starter = starter
        self._executor: Executor | None = None
        self._logs: LogSink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entered = 0
        self._polls = 0
        self._next_poll_delay = self.query_seconds
        self._claim_lock = asyncio.Lock()
        self._runs_left_queued = True
        """Whether the last claim may have left due runs behind (a finished run then claims)."""
        self._last_heartbeat = 0.0
        self._hurry = asyncio.Event()
        """Set by a second signal during the drain: requeue what still runs at once."""
        self._make_pollers()

    def _make_pollers(self) -> None:
        self._poll = Poller("poll", self._poll_step, lambda: self._next_poll_delay)
        self._dispatch = Poller(
            "dispatch", self._dispatch_step, lambda: min(self.query_seconds, DISPATCH_SECONDS)
        )
        self._cancels = Poller("cancel watch", self._cancel_step, lambda: CANCEL_CHECK_SECONDS)

    # -- what is served -----------------------------------------------------

    @property
    def store(self) -> AsyncStore:
        return open_store(self.settings)

    @property
    def deployment_ids(self) -> set[UUID]:
        return set(self.deployments)

    async def add_flow(
        self, flow: Flow[Any, Any], name: str | None = None, **options: Unpack[DeploymentOptions]
    ) -> UUID:
        """Register (create or update) a deployment of ``flow`` served by this runner."""
        return await self.add_deployment(flow.to_deployment(name, **options))

    async def add_deployment(self, deployment: RunnerDeployment) -> UUID:
        """Store a deployment (its id is stable across restarts) and serve it."""
        record = await self.store.upsert_deployment(deployment.to_spec())
        self.deployments[record.id] = record
        self.flows[record.id] = deployment.flow
        self._poll.wake()
        return record.id

    # -- capacity -----------------------------------------------------------

    @property
    def running_count(self) -> int:
        return len(self._executor.active) if self._executor else 0

    @property
    def is_serving(self) -> bool:
        """True once each of its loops (poll, dispatch, cancel watch) has run a step."""
        return all(poller.steps > 0 for poller in (self._poll, self._dispatch, self._cancels))

    def has_slots_available(self) -> bool:
        return self.running_count < self.limit

    def wake(self, why: Wake = "created") -> None:
        """Local news: claim a new run, or look for cancellations, now rather than later.

        Thread-safe. Kept apart so a stream of triggers never costs a cancellation check each.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _on_loop(loop):
            (self._dispatch if why == "created" else self._cancels).wake()
        else:
            loop.call_soon_threadsafe(self.wake, why)

    # -- lifecycle ------------------------------------------------------------

    async def __aenter__(self) -> Runner:
        if self._entered == 0:
            await self._open()
        self._entered += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._entered -= 1
        if self._entered == 0:
            await self._close()

    async def _open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._make_pollers()
        self._hurry.clear()
        self._polls = 0
        store = self.store
        if self._starter is None:
            entrypoints = [d.entrypoint for d in self.deployments.values() if d.entrypoint]
            starter = ForkServerStarter(entrypoints)
            await starter.open()
            self._starter = starter
        self._logs = LogSink(store)
        self._executor = Executor(
            store,
            self._starter,
            self._logs,
            kill_grace_seconds=self.kill_grace_seconds,
            on_finished=self._on_run_finished,
        )
        self.record = RunnerRecord(name=self.name)
        await store.register_runner(self.record)
        add_wakeup(self.wake)

    async def _close(self) -> None:
        remove_wakeup(self.wake)
        await self._drain()
        if self._logs is not None:
            await self._logs.close()
        with contextlib.suppress(Exception):
            await self.store.heartbeat(self.record.id, stopped=True)
        if self._starter is not None:
            await self._starter.close()

    async def start(self, run_once: bool = False, webserver: bool | None = None) -> None:
        """Serve until stopped (``stop()``, SIGTERM, SIGINT), then drain gracefully.

        The first poll happens before the webserver listens, so its health
        check is green from its first answer.
        """
        # Signals stay handled through the drain: a second one cuts the grace period short.
        with self._signals_handled():
            async with self:
                serve_web = self.webserver if webserver is None else webserver
                await self._poll.run_once()
                web_task = await self._start_webserver() if serve_web else None
                settle_heap()
                try:
                    if run_once:
                        await self._finish_active()
                    else:
                        await self._run_loops()
                finally:
                    if web_task is not None:
                        await _stop_task(web_task)

    async def _finish_active(self) -> None:
        executor = self._executor
        assert executor is not None
        tasks = [h.task for h in executor.active.values() if h.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_loops(self) -> None:
        watch = asyncio.create_task(self._watch_changes())
        try:
            async with asyncio.TaskGroup() as group:
                for poller in (self._poll, self._dispatch, self._cancels):
                    group.create_task(poller.run())
        finally:
            await _stop_task(watch)

    async def _watch_changes(self) -> None:
        """Wake at once for runs queued or cancelled by other processes (else: the polls)."""
        try:
            await self.store.watch_changes(self.wake)
        except Exception:
            logger.exception("Watching the database for other processes' runs failed")

    async def stop(self) -> None:
        """Stop claiming and let ``start()`` drain and return."""
        for poller in (self._poll, self._dispatch, self._cancels):
            poller.stop()

    @contextlib.contextmanager
    def _signals_handled(self) -> Any:
        loop = asyncio.get_running_loop()
        wanted = self.handle_signals and threading.current_thread() is threading.main_thread()
        installed: list[signal.Signals] = []
        if wanted:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self._on_signal, signum)
                installed.append(signum)
        try:
            yield
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: signal.Signals) -> None:
        if self._poll.stopping:  # already draining (a signal, /shutdown or stop())
            logger.warning("Received %s again: requeueing the running runs now", signum.name)
            self._hurry.set()
            return
        logger.warning("Received %s: draining, then stopping", signum.name)
        asyncio.get_running_loop().create_task(self.stop())

    async def _start_webserver(self) -> asyncio.Task[None]:
        from headrace.runner.server import serve_in_loop

        return await serve_in_loop(self)

    # -- the loops' steps ---------------------------------------------------

    async def _poll_step(self) -> None:
        await self._heartbeat()
        if self._polls % RECOVERY_EVERY_POLLS == 0:
            await self._recover_orphans()
        self._polls += 1
        await self._plan_schedules()
        claimed_at = utcnow()
        await self._claim_and_launch()
        await self._check_cancellations()
        await self._stop_lost_runs()
        self.last_polled = utcnow()
        self._next_poll_delay = await self._delay_until_next_due(after=claimed_at)

    async def _recover_orphans(self) -> None:
        # Not during a claim: a run claimed but not yet launched would look orphaned.
        async with self._claim_lock:
            await recover_orphans(
                self.store,
                self.record,
                self.deployment_ids,
                heartbeat_timeout=timedelta(seconds=self.settings.runner_heartbeat_timeout_seconds),
                active=self._executing,
            )

    def _executing(self) -> Collection[UUID]:
        return set(self._executor.active) if self._executor else set()

    async def _delay_until_next_due(self, after: datetime) -> float:
        """Sleep until the next poll, or until a queued run falls due, whichever is sooner.

        Runs that were already due at the claim (``after``) and are still queued
        wait for a free slot: a finished run wakes the dispatcher for them.
        Counting them here would poll without pause while every slot is busy.
        """
        due = await self.store.next_due_time(self.deployment_ids, self.name, after)
        if due is None:
            return self.query_seconds
        return max(0.0, min(self.query_seconds, (due - utcnow()).total_seconds()))

    async def _plan_schedules(self) -> None:
        from headrace.runner.scheduling import plan_scheduled_runs

        await self._refresh_deployments()
        await plan_scheduled_runs(self.store, list(self.deployments.values()))

    async def _refresh_deployments(self) -> None:
        """Take the stored definitions: another process may have registered a newer one
        (a changed schedule, limit or pause) since this runner registered its own."""
        if self.deployments:
            for deployment in await self.store.read_deployments(self.deployment_ids):
                self.deployments[deployment.id] = deployment

    async def _dispatch_step(self) -> None:
        await self._claim_and_launch()

    async def _claim_and_launch(self) -> None:
        # One claim at a time: two overlapping claims could each see the same free slots.
        async with self._claim_lock:
            executor = self._executor
            if executor is None or self._poll.stopping:
                return
            free = self.limit - len(executor.active)
            if free <= 0:
                self._runs_left_queued = True  # woken for a run there is no slot for
                return
            limits = self._concurrency_limits()
            claimed = await self.store.claim_runs(
                deployment_ids=self.deployment_ids,
                runner=self.record,
                limit=free,
                concurrency_limits=limits,
            )
            # Fewer runs than free slots: nothing else was due, and whatever is queued
            # from now on wakes the dispatcher itself. A deployment's limit may hold
            # runs back, so with limits a finished run always claims.
            self._runs_left_queued = len(claimed) == free or bool(limits)
            for run in claimed:
                executor.launch(run, self._entrypoint_for(run))

    def _entrypoint_for(self, run: FlowRun) -> str | None:
        """The run's own entrypoint, else its deployment's (runs queued by bare clients)."""
        if run.entrypoint or run.deployment_id is None:
            return run.entrypoint
        deployment = self.deployments.get(run.deployment_id)
        return deployment.entrypoint if deployment else None

    def _concurrency_limits(self) -> Mapping[UUID, int]:
        return {
            d.id: d.concurrency_limit
            for d in self.deployments.values()
            if d.concurrency_limit is not None
        }

    async def _stop_lost_runs(self) -> None:
        """Kill the processes of runs another runner took over: one attempt runs at a time."""
        executor = self._executor
        if executor is None or not executor.active:
            return
        for run_id in await self.store.taken_among(list(executor.active), self.record.id):
            handle = executor.active.get(run_id)
            if handle is not None and executor.kill(run_id, KillReason.LOST) is not None:
                logger.warning(
                    "Flow run %s was taken over by another runner; stopping it here",
                    handle.run.name,
                )

    async def _cancel_step(self) -> None:
        if time.monotonic() - self._last_heartbeat >= self._heartbeat_seconds:
            await self._heartbeat()  # whatever the poll interval: others must not think us dead
        await self._check_cancellations()

    @property
    def _heartbeat_seconds(self) -> float:
        """A third of the timeout (and at least every poll): two heartbeats may go missing."""
        return min(self.query_seconds, self.settings.runner_heartbeat_timeout_seconds / 3)

    async def _heartbeat(self) -> None:
        self._last_heartbeat = time.monotonic()
        await self.store.heartbeat(self.record.id)

    async def _check_cancellations(self) -> None:
        executor = self._executor
        if executor is None or not executor.active:
            return
        for run_id in await self.store.cancelling_among(list(executor.active)):
            handle = executor.active.get(run_id)
            if handle is not None and executor.kill(run_id, KillReason.CANCEL) is not None:
                logger.info("Cancelling flow run %s", handle.run.name)

    def _on_run_finished(self, run: FlowRun | None) -> None:
        if self._runs_left_queued:
            self._dispatch.wake()
        if run is not None and run.state.type == StateType.SCHEDULED:
            self._poll.wake()  # a retry or requeue: plan the next poll around its due time

    # -- draining -------------------------------------------------------------

    async def _drain(self) -> None:
        """Stop claiming; finish, requeue or cancel what runs, per its deployment's policy."""
        await self.stop()
        executor = self._executor
        if executor is None or not executor.active:
            return
        handles = list(executor.active.values())
        finishing = []
        for handle in handles:
            policy = self._on_shutdown(handle.run)
            if policy == "cancel":
                executor.kill(handle.run.id, KillReason.SHUTDOWN)
            elif policy == "requeue":
                executor.kill(handle.run.id, KillReason.REQUEUE)
            elif handle.task is not None:
                finishing.append(handle.task)
        if finishing:
            count = len(finishing)
            runs = "run" if count == 1 else "runs"
            logger.info("Waiting up to %gs for %d %s to finish", self._grace, count, runs)
            await self._wait_unless_hurried(finishing)
        for handle in list(executor.active.values()):
            executor.kill(handle.run.id, KillReason.REQUEUE)
        tasks = [h.task for h in handles if h.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_unless_hurried(self, tasks: list[asyncio.Task[Any]]) -> None:
        """Until ``tasks`` are done, the grace period ends or a second signal comes."""
        hurry = asyncio.ensure_future(self._hurry.wait())
        pending: set[asyncio.Future[Any]] = set(tasks)
        try:
            async with asyncio.timeout(self._grace):
                while pending and not hurry.done():
                    done, _ = await asyncio.wait(
                        [*pending, hurry], return_when=asyncio.FIRST_COMPLETED
                    )
                    pending -= done
        except TimeoutError:
            pass  # the grace period is over: what still runs is requeued
        finally:
            hurry.cancel()
            await asyncio.gather(hurry, return_exceptions=True)

    @property
    def _grace(self) -> float:
        return self.settings.runner_shutdown_grace_seconds

    def _on_shutdown(self, run: FlowRun) -> OnShutdown:
        deployment = self.deployments.get(run.deployment_id) if run.deployment_id else None
        return deployment.on_shutdown if deployment else "finish"

    # -- running things directly -------------------------------------------

    async def execute_flow_run(self, flow_run_id: UUID, entrypoint: str | None = None) -> FlowRun:
        """Claim and execute one existing run in a child process; return it once it ended."""
        async with self:
            executor = self._executor
            assert executor is not None
            async with self._claim_lock:  # claimed and launched before recovery looks
                run = await self.store.claim_flow_run(flow_run_id, self.record)
                handle = executor.launch(run, entrypoint)
            assert handle.task is not None
            await asyncio.gather(handle.task, return_exceptions=True)
            return await self.store.read_flow_run(flow_run_id)

    def execute_in_background(
        self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` on the runner's loop from any thread."""
        if self._loop is None:
            raise RuntimeError("The runner is not started; use `async with runner:` first")
        return asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._loop)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def _stop_task(task: Awaitable[None]) -> None:
    if isinstance(task, asyncio.Task):
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task

"""``Runner``: serves deployments, claims their runs and executes each in its own process.

The runner wires named parts: what it serves (``served.py``); while it is
open, a session (``session.py``) of a dispatcher that claims and launches
(``dispatch.py``, over the executor), liveness (``liveness.py``: heartbeats,
recovery, cancellations) and the drain (``drain.py``); and the stop signals
(``signals.py``). It owns the poll and the lifecycle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import signal
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import UUID

from typing_extensions import Unpack

from headrace.deployments import DeploymentOptions, RunnerDeployment
from headrace.flow_runs import FlowRun
from headrace.names import default_runner_name
from headrace.process.starter import ProcessStarter
from headrace.runner.dispatch import DISPATCH_SECONDS
from headrace.runner.liveness import CANCEL_CHECK_SECONDS
from headrace.runner.metrics import RunnerMetrics, RunObserver
from headrace.runner.served import ServedDeployments
from headrace.runner.session import Session, SessionOptions, stop_task
from headrace.runner.signals import on_stop
from headrace.settings import Settings, load_settings
from headrace.store import AsyncStore, RunnerRecord, open_store
from headrace.store.changes import Wake

if TYPE_CHECKING:
    from headrace.flows import Flow

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


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
        dispatch_seconds: float = DISPATCH_SECONDS,
        cancel_check_seconds: float = CANCEL_CHECK_SECONDS,
    ) -> None:
        self.settings = settings or load_settings()
        self.name = name or default_runner_name()
        self.query_seconds = float(query_seconds or self.settings.runner_poll_frequency)
        self.limit = int(limit if limit is not None else self.settings.runner_process_limit)
        self.webserver = webserver or self.settings.runner_server_enable
        self.handle_signals = handle_signals
        self.kill_grace_seconds = kill_grace_seconds if kill_grace_seconds is not None else 10.0
        self.dispatch_seconds = min(self.query_seconds, dispatch_seconds)
        self.cancel_check_seconds = cancel_check_seconds
        self.last_polled: datetime | None = None
        self.record = RunnerRecord(name=self.name)
        self._served = ServedDeployments()
        self.deployments = self._served.deployments
        self.flows = self._served.flows
        self._starter = starter
        self._session: Session | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._entered = 0
        self._hurry = asyncio.Event()
        """Set by a second signal during the drain: stop what still runs at once."""
        self.metrics = RunnerMetrics(self) if self.settings.metrics_enabled else None
        self.observers: list[RunObserver] = [] if self.metrics is None else [self.metrics]
        """Told of each run's start and end (add to it before the runner opens)."""

    @property
    def store(self) -> AsyncStore:
        return open_store(self.settings)

    @property
    def deployment_ids(self) -> set[UUID]:
        return self._served.ids

    async def add_flow(
        self, flow: Flow[Any, Any], name: str | None = None, **options: Unpack[DeploymentOptions]
    ) -> UUID:
        """Register (create or update) a deployment of ``flow`` served by this runner."""
        return await self.add_deployment(flow.to_deployment(name, **options))

    async def add_deployment(self, deployment: RunnerDeployment) -> UUID:
        """Store a deployment (its id is stable across restarts) and serve it."""
        record = await self.store.upsert_deployment(deployment.to_spec())
        self._served.add(record, deployment.flow)
        if self._session is not None:
            self._session.poll.wake()
        return record.id

    @property
    def running_count(self) -> int:
        return len(self._session.dispatcher.executor.active) if self._session else 0

    @property
    def claimed_total(self) -> int:
        """Runs claimed since the runner was opened (the webserver's backlog bookkeeping)."""
        return self._session.dispatcher.claimed_total if self._session else 0

    @property
    def draining(self) -> bool:
        """Stopping: it claims nothing more and waits for its runs to end."""
        return self._session is not None and self._session.poll.stopping

    def has_slots_available(self) -> bool:
        return self.running_count < self.limit

    @property
    def is_serving(self) -> bool:
        """True once each of its loops (poll, dispatch, cancel watch) has run a step."""
        session = self._session
        return session is not None and all(poller.steps > 0 for poller in session.pollers)

    def wake(self, why: Wake = "created") -> None:
        """News: claim a new run, or look for cancellations, now rather than later.

        Thread-safe. Kept apart so a stream of triggers never costs a cancellation check each.
        """
        if self._session is not None:
            self._session.wake(why)

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
        self._hurry.clear()
        options = SessionOptions(
            self.name,
            self.limit,
            poll_seconds=self.query_seconds,
            dispatch_seconds=self.dispatch_seconds,
            cancel_check_seconds=self.cancel_check_seconds,
            kill_grace_seconds=self.kill_grace_seconds,
            settings=self.settings,
            observers=tuple(self.observers),
        )
        session = Session(self.store, self._served, self._starter, options, self._polled)
        self._session = session
        if self.metrics is not None:
            session.dispatcher.executor.outcomes.timed_write = self.metrics.outcome_written
            self.metrics.heartbeat_age = lambda: session.liveness.heartbeat_age_seconds
        self._starter, self.record = session.starter, session.record
        await session.open()

    def _polled(self, when: datetime) -> None:
        self.last_polled = when

    async def _close(self) -> None:
        if self._session is not None:
            await self._session.close(self._hurry)

    async def start(self, run_once: bool = False, webserver: bool | None = None) -> None:
        """Serve until stopped (``stop()``, SIGTERM, SIGINT), then drain gracefully.

        The first poll happens before the webserver listens, so its health
        check is green from its first answer.
        """
        # Signals stay handled through the drain: a second one cuts the grace period short.
        with on_stop(self._on_signal, enabled=self.handle_signals):
            async with self:
                session = self._session
                assert session is not None
                await session.poll.run_once()
                web_task = None
                if self.webserver if webserver is None else webserver:
                    from headrace.runner.server import serve_in_loop  # the web stack: only here

                    web_task = await serve_in_loop(self)
                try:
                    await (
                        session.dispatcher.wait_for_active() if run_once else session.run_loops()
                    )
                finally:
                    if web_task is not None:
                        # It answers through the drain: /ready says so, the dashboard
                        # shows the last runs end, a cancel reaches them.
                        try:
                            await session.drain(self._hurry)
                        finally:
                            await stop_task(web_task)

    async def stop(self) -> None:
        """Stop claiming and let ``start()`` drain and return."""
        if self._session is not None:
            self._session.stop()

    def _on_signal(self, signum: signal.Signals) -> None:
        if self._session is not None and self._session.poll.stopping:  # already draining
            logger.warning("Received %s again: stopping the running runs now", signum.name)
            self._hurry.set()
            return
        logger.warning("Received %s: draining, then stopping", signum.name)
        asyncio.get_running_loop().create_task(self.stop())

    async def execute_flow_run(self, flow_run_id: UUID, entrypoint: str | None = None) -> FlowRun:
        """Claim and execute one existing run in a child process; return it once it ended."""
        async with self:
            assert self._session is not None
            handle = await self._session.dispatcher.claim_one(flow_run_id, entrypoint)
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

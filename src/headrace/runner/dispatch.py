"""The dispatcher: claims due runs into the runner's free slots and launches them.

It claims at every poll, the moment local work is queued (the store's change
feed wakes it) and when a finished run frees a slot that a queued run waits
for. Claims take turns: two overlapping claims could each see the same free
slots.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.process.starter import ProcessStarter
from headrace.runner.executor import Executor, RunHandle
from headrace.runner.journal import Journal
from headrace.runner.lease import Lease
from headrace.runner.logsink import LogSink
from headrace.runner.metrics import RunObserver
from headrace.runner.poller import Poller
from headrace.runner.served import ServedDeployments
from headrace.states import StateType, utcnow
from headrace.store import AsyncStore, RunnerRecord

DISPATCH_SECONDS = 1.0
"""Runs queued by other processes (the CLI, other clients) start within this long."""


class Dispatcher:
    """Fills free slots with due runs of the served deployments; owns the executor."""

    def __init__(
        self,
        store: AsyncStore,
        served: ServedDeployments,
        record: RunnerRecord,
        *,
        starter: ProcessStarter,
        logs: LogSink,
        limit: int,
        kill_grace_seconds: float,
        interval_seconds: float,
        replan: Callable[[], None],
        journal: Journal | None = None,
        lease: Lease | None = None,
        observers: Sequence[RunObserver] = (),
    ) -> None:
        self._store = store
        self._served = served
        self._record = record
        self._limit = limit
        self._replan = replan
        self.executor = Executor(
            store,
            starter,
            logs,
            kill_grace_seconds=kill_grace_seconds,
            on_finished=self.on_run_finished,
            journal=journal,
            lease=lease,
            observers=observers,
        )
        self.claimed_total = 0
        """Runs claimed so far: the webserver's backlog estimate subtracts them."""
        self.claim_lock = asyncio.Lock()
        """Held from a claim to its launch: recovery must not take a claimed run for lost."""
        self._runs_left_queued = True
        """Whether the last claim may have left due runs behind (a finished run then claims)."""
        self.poller = Poller("dispatch", self.claim_and_launch, lambda: interval_seconds)

    async def claim_and_launch(self) -> bool:
        """Claim due runs into the free slots; False when it did not try (no lease, no slot)."""
        async with self.claim_lock:
            if self.poller.stopping or not self.executor.lease_held():
                return False  # without the lease, a claimed run could be another runner's soon
            free = self._limit - len(self.executor.active)
            if free <= 0:
                self._runs_left_queued = True  # woken for a run there is no slot for
                return False
            limits = self._served.concurrency_limits()
            claimed = await self._store.claim_runs(
                deployment_ids=self._served.ids,
                runner=self._record,
                limit=free,
                concurrency_limits=limits,
            )
            # Fewer runs than free slots: nothing else was due, and whatever is queued
            # from now on wakes the dispatcher itself. A deployment's limit may hold
            # runs back, so with limits a finished run always claims.
            self._runs_left_queued = len(claimed) == free or bool(limits)
            self.claimed_total += len(claimed)
            for run in claimed:
                self._launch(run, self._served.entrypoint_for(run))
            return True

    async def claim_one(self, flow_run_id: UUID, entrypoint: str | None) -> RunHandle:
        """Claim and launch one given run, whatever its deployment."""
        async with self.claim_lock:
            run = await self._store.claim_flow_run(flow_run_id, self._record)
            self.claimed_total += 1
            return self._launch(run, entrypoint)

    def _launch(self, run: FlowRun, entrypoint: str | None) -> RunHandle:
        """Launch with what ``ps`` shows (``headrace run flow/deployment run-name``) and the
        deployment its log lines name."""
        deployment = (
            None if run.deployment_id is None else self._served.deployments.get(run.deployment_id)
        )
        named = None if deployment is None else f"{run.flow_name}/{deployment.name}"
        title = f"headrace run {named or run.flow_name} {run.name}"
        return self.executor.launch(run, entrypoint, title=title, deployment=named)

    async def delay_until_next_due(self, after: datetime, poll_seconds: float) -> float:
        """Sleep until the next poll, or until a queued run falls due, whichever is sooner.

        Runs that were already due at the claim (``after``) and are still queued
        wait for a free slot: a finished run wakes the dispatcher for them.
        Counting them here would poll without pause while every slot is busy.
        """
        due = await self._store.next_due_time(self._served.ids, self._record.id, after)
        if due is None:
            return poll_seconds
        return max(0.0, min(poll_seconds, (due - utcnow()).total_seconds()))

    def on_run_finished(self, run: FlowRun | None) -> None:
        if self._runs_left_queued:
            self.poller.wake()
        if run is not None and run.state.type == StateType.SCHEDULED:
            self._replan()  # a retry or requeue: plan the next poll around its due time

    async def wait_for_active(self) -> None:
        """Until every run launched so far has ended."""
        tasks = [h.task for h in self.executor.active.values() if h.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

"""Liveness: the runner shows it is alive, and acts on what others decided about its runs.

- A heartbeat, so that runners on other hosts do not take it for dead, with the
  deployments it serves, so that readers see who will run their runs. It is a
  lease (``lease.py``): when no heartbeat could be stored for two thirds of the
  timeout, the runs' processes are killed before others may take the runs over.
- Recovery of the runs of runners that are dead, and of the ad-hoc runs queued
  for runners that are gone (``recovery.py``), every ``recovery_seconds``: a
  third of the heartbeat timeout, at most a poll. A dead runner's runs are taken
  over within the heartbeat timeout plus that interval (and a cancel check).
- Runs another runner took over are stopped here: one attempt runs at a time.
- Runs asked to cancel are killed; the cancellation watch checks for them
  often, and at once when the store's change feed says a cancel was asked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import timedelta
from uuid import UUID

from headrace.runner.executor import Executor
from headrace.runner.journal import Journal
from headrace.runner.lease import Lease
from headrace.runner.outcomes import KillReason
from headrace.runner.poller import Poller
from headrace.runner.recovery import recover_addressed_runs, recover_orphans, sweep_journals
from headrace.runner.served import ServedDeployments
from headrace.store import AsyncStore, RunnerRecord

logger = logging.getLogger(__name__)

CANCEL_CHECK_SECONDS = 0.5


class Liveness:
    """Heartbeats, recovery cadence, lost runs and cancellations, for one open runner."""

    def __init__(
        self,
        store: AsyncStore,
        record: RunnerRecord,
        served: ServedDeployments,
        executor: Executor,
        claim_lock: asyncio.Lock,
        *,
        heartbeat_timeout_seconds: float,
        poll_seconds: float,
        cancel_check_seconds: float = CANCEL_CHECK_SECONDS,
        journal: Journal | None = None,
        lease: Lease | None = None,
        lease_margin_seconds: float = 0.0,
    ) -> None:
        self._store = store
        self.lease = lease or Lease(heartbeat_timeout_seconds)
        self._lease_margin = timedelta(seconds=lease_margin_seconds)
        self._lease_timer: asyncio.TimerHandle | None = None
        self._record = record
        self._served = served
        self._executor = executor
        self._claim_lock = claim_lock
        self._journal = journal
        self._heartbeat_timeout = timedelta(seconds=heartbeat_timeout_seconds)
        # A third of the timeout (and at least every poll): two heartbeats may go missing.
        self._heartbeat_seconds = min(poll_seconds, heartbeat_timeout_seconds / 3)
        self.recovery_seconds = recovery_seconds(heartbeat_timeout_seconds, poll_seconds)
        self._last_heartbeat = 0.0
        self._last_recovery = -math.inf
        self._serving_recorded: set[UUID] | None = None
        self.polls = 0
        self.draining = False
        """Set once the runner stops: heartbeats and cancellations go on, recoveries not."""
        self.poller = Poller("cancel watch", self.cancel_step, lambda: cancel_check_seconds)

    async def on_poll(self) -> None:
        """The poll's first share: a heartbeat, and a recovery when one is due."""
        await self.heartbeat()
        await self._recover_when_due()
        self.polls += 1

    async def check_runs(self) -> None:
        """The poll's last share: carry out cancellations and stop runs taken over."""
        await self.check_cancellations()
        await self.stop_lost_runs()

    async def cancel_step(self) -> None:
        if time.monotonic() - self._last_heartbeat >= self._heartbeat_seconds:
            await self.heartbeat()  # whatever the poll interval: others must not think us dead
        if not self.draining:
            await self._recover_when_due()  # and their runs are taken over as soon as they are
        await self.check_cancellations()

    @property
    def heartbeat_age_seconds(self) -> float:
        """Seconds since the last heartbeat the database took."""
        return time.monotonic() - self._last_heartbeat

    async def heartbeat(self) -> None:
        """Show this runner alive, and record what it serves when that changed: readers
        tell from these whether anybody will run a deployment's runs."""
        serving = self._served.ids
        changed = serving != self._serving_recorded
        sent = time.monotonic()  # the stored stamp is no earlier: the lease runs from here
        await self._store.heartbeat(self._record.id, serving=serving if changed else None)
        # Counted once stored: after a database outage the next step tries again at once.
        self._last_heartbeat = time.monotonic()
        if changed:
            self._serving_recorded = serving
        had_one = self.lease.renewed_at is not None
        if self.lease.renew(sent) and had_one:
            logger.warning("Heartbeat stored again: this runner holds its lease and claims runs")
        self._arm_lease_timer()

    def _arm_lease_timer(self) -> None:
        """Wake when the lease lapses, whatever the loops are waiting on (a hung database)."""
        lapses = self.lease.lapses_at()
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        if lapses is not None:
            delay = max(0.0, lapses - time.monotonic())
            self._lease_timer = asyncio.get_running_loop().call_later(delay, self._on_lease_timer)

    def _on_lease_timer(self) -> None:
        self._lease_timer = None
        if self.lease.held():
            self._arm_lease_timer()  # renewed meanwhile
            return
        stopped = self._executor.lose_lease()
        logger.warning(
            "No heartbeat stored for %.0f s: this runner lost its lease, stopped %d runs "
            "(others may run them again) and claims none until a heartbeat is stored",
            self.lease.holds_for,
            stopped,
        )

    def close(self) -> None:
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None

    async def _recover_when_due(self) -> None:
        if time.monotonic() - self._last_recovery >= self.recovery_seconds:
            self._last_recovery = time.monotonic()
            await self.recover_orphans()

    async def recover_orphans(self) -> None:
        # Not during a claim: a run claimed but not yet launched would look orphaned.
        async with self._claim_lock:
            await recover_orphans(
                self._store,
                self._record,
                self._served.ids,
                heartbeat_timeout=self._heartbeat_timeout,
                active=self._executing,
                journal=self._journal,
                lease_margin=self._lease_margin,
                on_ended=self._executor.on_ended,
            )
            await recover_addressed_runs(
                self._store,
                self._record,
                self._served.can_load,
                heartbeat_timeout=self._heartbeat_timeout,
                lease_margin=self._lease_margin,
                on_ended=self._executor.on_ended,
            )
        if self._journal is not None:
            await sweep_journals(self._store, self._journal)

    def _executing(self) -> set[UUID]:
        """The runs this runner executes: those it claimed, and the subflow runs their
        processes execute (a subflow's own subflows among them)."""
        return set(self._executor.active) | self._executor.subflows.executing()

    async def check_cancellations(self) -> None:
        executor = self._executor
        if not executor.active:
            return
        for run_id in await self._store.cancelling_among(list(executor.active)):
            handle = executor.active.get(run_id)
            if handle is not None and executor.kill(run_id, KillReason.CANCEL) is not None:
                logger.info("Cancelling flow run %s", handle.run.name)
        await self.cancel_children()

    async def cancel_children(self) -> None:
        """Pass the cancels of subflow runs on to the processes executing them: a child is
        cancelled in its caller's process, which goes on (a child awaiting its retry is
        CANCELLED at once by the request, and must not run again)."""
        children = self._executor.subflows.open_children()
        if not children:
            return
        for child_id in await self._store.cancel_asked_among(list(children)):
            if self._executor.subflows.cancel(children[child_id], child_id):
                logger.info("Cancelling subflow run %s", child_id)

    async def stop_lost_runs(self) -> None:
        """Kill the processes of runs another runner took over: one attempt runs at a time."""
        executor = self._executor
        if not executor.active:
            return
        for run_id in await self._store.taken_among(list(executor.active), self._record.id):
            handle = executor.active.get(run_id)
            if handle is not None and executor.kill(run_id, KillReason.LOST) is not None:
                logger.warning(
                    "Flow run %s was taken over by another runner; stopping it here",
                    handle.run.name,
                )


def recovery_seconds(heartbeat_timeout_seconds: float, poll_seconds: float) -> float:
    """How often to look for dead runners' runs: a third of the heartbeat timeout, at most
    a poll, so that they are taken over soon after the timeout says their runner is dead."""
    return min(poll_seconds, heartbeat_timeout_seconds / 3)

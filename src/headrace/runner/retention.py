"""Retention: a runner deletes runs that ended longer ago than ``HEADRACE_RETENTION_DAYS``.

In the background, a batch at a time (one short transaction each, at the store's lowest
priority), with a pause after each batch at least as long as the batch took: triggers
and the runs' bookkeeping go between batches and never wait behind more than one. Once a
batch finds fewer runs than it may take, nothing is left until runs age past the cutoff
again: the next pass is an interval later. On PostgreSQL one runner prunes at a time
(an advisory lock per batch); the others find it taken and come back later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from headrace.runner.poller import Poller
from headrace.states import utcnow
from headrace.store import AsyncStore, Pruned
from headrace.store.admin import PRUNE_BATCH_RUNS, PRUNE_PAUSE_SECONDS

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 600.0
"""How often a runner looks for runs that aged past the cutoff: a few minutes' worth of
runs at a time, while an idle database is asked once in ten minutes."""


class Pruner:
    """Deletes runs that ended before ``now - keep_for``, batch by batch, until stopped."""

    def __init__(
        self,
        store: AsyncStore,
        keep_for: timedelta,
        *,
        interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        batch_runs: int = PRUNE_BATCH_RUNS,
        pause_seconds: float = PRUNE_PAUSE_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self.keep_for = keep_for
        self._interval = interval_seconds
        self._batch = batch_runs
        self._pause = pause_seconds
        self._clock = clock
        self._next_delay = 0.0
        self._this_pass = Pruned()
        self.pruned = Pruned()
        """What this runner deleted since it started."""
        self.poller = Poller("retention", self._step, lambda: self._next_delay)

    async def _step(self) -> None:
        self._next_delay = self._interval  # also after a failure: retried in a while
        cutoff = self._clock() - self.keep_for
        started = time.monotonic()
        batch = await self._store.prune_flow_runs(cutoff, limit=self._batch)
        took = time.monotonic() - started
        if batch.busy:  # another runner prunes
            return
        self.pruned += batch
        self._this_pass += batch
        if batch.runs >= self._batch:  # more to delete: after a pause
            self._next_delay = max(self._pause, took)
            return
        done, self._this_pass = self._this_pass, Pruned()
        if done.runs:
            rows = ", ".join(f"{n} {table} rows" for table, n in done.dependents.items())
            logger.info(
                "Deleted %d runs that ended before %s UTC (HEADRACE_RETENTION_DAYS), with %s",
                done.runs,
                f"{cutoff:%Y-%m-%d %H:%M:%S}",
                rows,
            )

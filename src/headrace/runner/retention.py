"""Retention: a runner deletes runs that ended longer ago than ``HEADRACE_RETENTION_DAYS``.

In the background, a batch at a time (one short transaction each, at the store's lowest
priority), paced by ``PrunePace``: batches sized to take about 20 ms, and pauses that
leave the database four fifths of the time for everything else. Triggers and the runs'
bookkeeping go between batches and never wait behind more than one. Once a
batch finds fewer runs than it may take, nothing is left until runs age past the cutoff
again: the next pass is an interval later. On PostgreSQL one runner prunes at a time
(an advisory lock per batch); the others find it taken and come back later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from headrace.runner.poller import Poller
from headrace.states import utcnow
from headrace.store import AsyncStore, Pruned
from headrace.store.admin import PRUNE_BATCH_RUNS, PRUNE_PAUSE_SECONDS

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 600.0
"""How often a runner looks for runs that aged past the cutoff: a few minutes' worth of
runs at a time, while an idle database is asked once in ten minutes."""
BATCH_TARGET_SECONDS = 0.025
"""What one batch should take: about what a trigger takes under load, so one arriving
during a batch waits about twice its usual time, not ten times."""
PRUNE_SHARE = 0.2
"""The share of the time pruning may hold the database while it has a backlog."""
FIRST_BATCH_RUNS = 100
MIN_BATCH_RUNS = 50
"""Fewer would take most of a batch's time in fixed costs (a transaction, the lookups)."""


@dataclass
class PrunePace:
    """How many runs the next batch deletes and how long to pause before it: sizes follow
    what batches take (halved or doubled at most per batch, up to ``PRUNE_BATCH_RUNS``)."""

    batch_runs: int = FIRST_BATCH_RUNS
    max_runs: int = PRUNE_BATCH_RUNS
    target_seconds: float = BATCH_TARGET_SECONDS
    share: float = PRUNE_SHARE
    min_pause_seconds: float = PRUNE_PAUSE_SECONDS

    def after(self, took_seconds: float) -> float:
        """A batch took this long: size the next one, and return the pause before it."""
        ratio = min(2.0, max(0.5, self.target_seconds / max(took_seconds, 1e-6)))
        self.batch_runs = int(min(self.max_runs, max(MIN_BATCH_RUNS, self.batch_runs * ratio)))
        return max(self.min_pause_seconds, took_seconds * (1 - self.share) / self.share)


class Pruner:
    """Deletes runs that ended before ``now - keep_for``, batch by batch, until stopped."""

    def __init__(
        self,
        store: AsyncStore,
        keep_for: timedelta,
        *,
        interval_seconds: float = PRUNE_INTERVAL_SECONDS,
        pace: PrunePace | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self.keep_for = keep_for
        self._interval = interval_seconds
        self.pace = pace or PrunePace()
        self._clock = clock
        self._next_delay = 0.0
        self._this_pass = Pruned()
        self.pruned = Pruned()
        """What this runner deleted since it started."""
        self.poller = Poller("retention", self._step, lambda: self._next_delay)

    async def _step(self) -> None:
        self._next_delay = self._interval  # also after a failure: retried in a while
        cutoff = self._clock() - self.keep_for
        asked = self.pace.batch_runs
        batch = await self._store.prune_flow_runs(cutoff, limit=asked)
        if batch.busy:  # another runner prunes
            return
        self.pruned += batch
        self._this_pass += batch
        if batch.runs >= asked:  # more to delete: after a pause
            self._next_delay = self.pace.after(batch.seconds)
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

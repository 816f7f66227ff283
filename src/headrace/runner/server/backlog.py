"""Backpressure: how many runs wait for this runner, and whether one more may queue.

Counting queued runs is a database query; doing it for every trigger would
double a trigger's cost, and doing it for every refusal would make a 429 dearer
than a 201. ``Backlog`` keeps the depth in memory instead: the last count, plus
the runs this server has queued since, minus the runs the runner has claimed
since. Both are the runner's own bookkeeping, so the estimate stays exact for
everything this process does; what other processes do (their triggers, their
claims, scheduled runs falling due) is picked up by a fresh count, taken at
most every ``MAX_ESTIMATE_AGE_SECONDS`` by whichever trigger finds the estimate
stale. A trigger that would take one of the last ``margin`` places counts
exactly before accepting; a full backlog is refused from memory. Triggers that
waited for a count that failed (a silent database) fail with it, rather than
each counting again in turn: a request waits for the store once, not once per
trigger ahead of it.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from headrace.exceptions import StoreError

if TYPE_CHECKING:
    from headrace.runner.runner import Runner

MAX_ESTIMATE_AGE_SECONDS = 0.5
QUEUE_DEPTH_HEADER = "X-Queue-Depth"
MAX_RETRY_AFTER_SECONDS = 60


@dataclass(frozen=True)
class BacklogFull:
    """A trigger refused: ``depth`` runs already wait, as many as the limit allows."""

    depth: int
    retry_after_seconds: int

    @property
    def message(self) -> str:
        return f"The runner's backlog is full ({self.depth} queued runs)"

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_seconds), QUEUE_DEPTH_HEADER: str(self.depth)}


def retry_after_seconds(poll_seconds: float) -> int:
    """When to try again: about one poll of the runner, which is when slots free up."""
    return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(poll_seconds)))


class Backlog:
    """The runner's queue depth against ``HEADRACE_RUNNER_BACKLOG_LIMIT``."""

    def __init__(self, runner: Runner, limit: int) -> None:
        self._runner = runner
        self.limit = limit
        self._margin = max(1, limit // 10)
        self._counted = 0
        self._queued_since = 0
        self._claimed_before = 0
        """The runner's claim total when the last count ended."""
        self._claimed_latest = 0
        """The runner's claim total when last looked at."""
        self._counted_at = -math.inf
        self._counting = asyncio.Lock()
        self._counts = 0
        """Counts begun, so a waiting trigger knows whether one ran while it waited."""
        self._count_failed: StoreError | None = None

    def estimate(self) -> int:
        """The last count, plus the runs queued here since, minus those claimed since."""
        claimed = max(0, self._runner.claimed_total - self._claimed_before)
        return max(0, self._counted + self._queued_since - claimed)

    async def depth(self) -> int:
        """Runs waiting to start: from memory while the estimate is fresh and either far
        below the limit or at it; otherwise counted (one count at a time)."""
        if self._trusted():
            return self.estimate()
        seen, counts = self._counted_at, self._counts
        async with self._counting:
            if self._counted_at != seen:  # another trigger counted while this one waited
                return self.estimate()
            failed = self._count_failed
            if self._counts != counts and failed is not None:
                raise type(failed)(str(failed))  # so would this one's, a timeout later
            return await self._count()

    def _fresh(self) -> bool:
        claimed, latest = self._runner.claimed_total, self._claimed_latest
        self._claimed_latest = claimed
        if claimed < latest:
            return False  # the runner was opened again: its claim total started over
        return time.monotonic() - self._counted_at < MAX_ESTIMATE_AGE_SECONDS

    def _trusted(self) -> bool:
        if not self._fresh():
            return False
        estimate = self.estimate()
        return estimate >= self.limit or estimate + self._margin < self.limit

    async def _count(self) -> int:
        runner = self._runner
        queued_before = self._queued_since
        self._counts += 1
        try:
            counted = await runner.store.count_queued_runs(
                runner.deployment_ids, runner.record.id, cap=self.limit
            )
        except StoreError as exc:
            self._count_failed = exc
            raise
        self._count_failed = None
        # Runs queued or claimed while counting may or may not be in the count: they are
        # taken as not, which errs toward a full backlog rather than past the limit.
        self._counted, self._queued_since = counted, self._queued_since - queued_before
        self._claimed_before, self._counted_at = runner.claimed_total, time.monotonic()
        return self.estimate()

    def queued(self) -> None:
        """This server has just queued a run."""
        self._queued_since += 1

    def is_full(self, depth: int) -> bool:
        return depth >= self.limit

    def full(self, depth: int) -> BacklogFull:
        return BacklogFull(depth, retry_after_seconds(self._runner.query_seconds))

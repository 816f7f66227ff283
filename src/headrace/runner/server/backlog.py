"""Backpressure: how many runs wait for this runner, and whether one more may queue.

Counting queued runs is a database query; doing it for every trigger would
double a trigger's cost. ``Backlog`` counts when it matters and estimates when
it does not: the estimate is the last count plus the runs this server has
queued since, good for ``MAX_ESTIMATE_AGE_SECONDS``, and is only trusted while
it stays a margin below the limit. Near the limit every trigger counts exactly.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from headrace.runner.runner import Runner

MAX_ESTIMATE_AGE_SECONDS = 0.5
QUEUE_DEPTH_HEADER = "X-Queue-Depth"
MAX_RETRY_AFTER_SECONDS = 60


class Backlog:
    """The runner's queue depth against ``HEADRACE_RUNNER_BACKLOG_LIMIT``."""

    def __init__(self, runner: Runner, limit: int) -> None:
        self._runner = runner
        self.limit = limit
        self._margin = max(1, limit // 10)
        self._counted = 0
        self._queued_since = 0
        self._counted_at = -math.inf

    async def depth(self) -> int:
        """Runs waiting to start: counted, or estimated while far below the limit."""
        estimate = self._counted + self._queued_since
        fresh = time.monotonic() - self._counted_at < MAX_ESTIMATE_AGE_SECONDS
        if fresh and estimate + self._margin < self.limit:
            return estimate
        runner = self._runner
        counted = await runner.store.count_queued_runs(
            runner.deployment_ids, runner.record.id, cap=self.limit
        )
        self._counted, self._queued_since, self._counted_at = counted, 0, time.monotonic()
        return counted

    def queued(self) -> None:
        """This server has just queued a run."""
        self._queued_since += 1

    def is_full(self, depth: int) -> bool:
        return depth >= self.limit

    @property
    def retry_after_seconds(self) -> int:
        """When to try again: about one poll of the runner, which is when slots free up."""
        return max(1, min(MAX_RETRY_AFTER_SECONDS, math.ceil(self._runner.query_seconds)))

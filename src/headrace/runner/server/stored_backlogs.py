"""Backpressure where no runner is: ``headrace ui`` refuses a trigger as the runners
serving the deployment would.

A runner's webserver keeps its backlog in memory (``backlog.py``); ``headrace
ui`` executes nothing and queues for nobody in particular, so it counts in the
database instead, against the limit each runner stored when it registered
(``HEADRACE_RUNNER_BACKLOG_LIMIT`` in the runner's environment, not this
process's). A deployment's run is refused only when every live runner serving
it has a full backlog: any one with room will claim it. A deployment nobody
serves, or served by a runner that stored no limit (an older headrace), is not
refused: there is no backlog to measure. A refusal is remembered for
``MAX_ESTIMATE_AGE_SECONDS``, so a flood of triggers against a full backlog
costs the database one count per half second, not one per trigger.
"""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import UUID

from headrace.runner.server.backlog import (
    MAX_ESTIMATE_AGE_SECONDS,
    BacklogFull,
    retry_after_seconds,
)
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.store import AsyncStore


class StoredBacklogs:
    """The backlogs of the runners serving each deployment, as the database has them."""

    def __init__(self, store: AsyncStore, settings: Settings) -> None:
        self._store = store
        self._heartbeat_timeout = timedelta(seconds=settings.runner_heartbeat_timeout_seconds)
        self._retry_after = retry_after_seconds(settings.runner_poll_frequency)
        self._refused: dict[UUID, tuple[float, BacklogFull]] = {}

    async def refusal(self, deployment_id: UUID) -> BacklogFull | None:
        """Why a run of this deployment may not queue now, or None when it may."""
        remembered = self._refused.get(deployment_id)
        if remembered is not None and time.monotonic() - remembered[0] < MAX_ESTIMATE_AGE_SECONDS:
            return remembered[1]
        full = await self._count(deployment_id)
        if full is None:
            self._refused.pop(deployment_id, None)
        else:
            self._refused[deployment_id] = (time.monotonic(), full)
        return full

    async def _count(self, deployment_id: UUID) -> BacklogFull | None:
        store, now = self._store, utcnow()
        serving = await store.read_serving_runners([deployment_id])
        live = [r for _, r in serving if r.presumed_alive(now, self._heartbeat_timeout)]
        limits = [r.backlog_limit for r in live]
        if not live or None in limits:
            return None
        served = await store.read_served_deployment_ids()
        depths = []
        for runner, limit in zip(live, limits, strict=True):
            assert limit is not None
            depth = await store.count_queued_runs(served.get(runner.id, ()), runner.id, cap=limit)
            if depth < limit:
                return None  # this one has room: it will claim the run
            depths.append(depth)
        return BacklogFull(min(depths), self._retry_after)

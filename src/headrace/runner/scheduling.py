"""Materialising schedules: insert upcoming runs as SCHEDULED, once, whoever plans them.

Each planned run carries a deterministic idempotency key (deployment +
schedule + time), so restarts and several runners never create a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from headrace.deployments import Deployment
from headrace.flow_runs import NewFlowRun
from headrace.new_runs import for_schedule
from headrace.planning import plan_runs
from headrace.schedules import schedule_key
from headrace.states import utcnow
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)


async def plan_scheduled_runs(store: AsyncStore, deployments: Sequence[Deployment]) -> int:
    """Create the upcoming (and, per policy, missed) runs of every scheduled deployment."""
    now = utcnow()
    news: list[NewFlowRun] = []
    for deployment in deployments:
        if deployment.paused or not deployment.schedules:
            continue
        keys = [schedule_key(s) for s in deployment.schedules]
        last = await store.last_planned_times(deployment.id, keys)
        if deployment.planning_since is not None:  # nothing was missed before it
            last = {key: max(time, deployment.planning_since) for key, time in last.items()}
        try:
            planned = await asyncio.to_thread(  # a dense rrule may take a while: not on the loop
                plan_runs,
                deployment.schedules,
                now=now,
                last_planned=last,
                catchup=deployment.catchup,
                paused=deployment.paused,
            )
        except (ValueError, OverflowError) as exc:  # one bad schedule must not stop the rest
            logger.error("Cannot plan the runs of %s: %s", deployment.name, exc)
            continue
        news.extend(for_schedule(deployment, p) for p in planned)
    return await store.create_planned_runs(news)

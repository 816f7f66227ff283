"""Stopping with runs in flight: each run's deployment says what becomes of it.

``finish`` waits for the run up to the grace period, ``requeue`` ends its
process and queues it again, ``cancel`` ends it as CANCELLED. Whatever still
runs when the grace period ends, or when a second signal asks to hurry, is
stopped and follows the crash rule: a new attempt if it has retries left, else
CRASHED. A stopped runner leaves no run stranded, and never re-runs a body
that may have done half its work unless its retries allow it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from headrace.deployments import OnShutdown
from headrace.flow_runs import FlowRun
from headrace.runner.executor import Executor
from headrace.runner.outcomes import KillReason

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainPlan:
    """Which runs end at once (cancelled or requeued), and which may finish first."""

    cancel: list[UUID] = field(default_factory=list)
    requeue: list[UUID] = field(default_factory=list)
    finish: list[UUID] = field(default_factory=list)


def plan_drain(runs: Iterable[FlowRun], policy_of: Callable[[FlowRun], OnShutdown]) -> DrainPlan:
    """Sort the runs in flight by what their deployments want done with them."""
    plan = DrainPlan()
    ending = {"cancel": plan.cancel, "requeue": plan.requeue}
    for run in runs:
        ending.get(policy_of(run), plan.finish).append(run.id)
    return plan


async def drain(
    executor: Executor,
    policy_of: Callable[[FlowRun], OnShutdown],
    *,
    grace_seconds: float,
    hurry: asyncio.Event,
) -> None:
    """Finish, requeue or cancel what runs, per its deployment's policy; return once all ended."""
    handles = list(executor.active.values())
    if not handles:
        return
    plan = plan_drain([h.run for h in handles], policy_of)
    _kill(executor, plan.cancel, KillReason.SHUTDOWN)
    _kill(executor, plan.requeue, KillReason.REQUEUE)
    tasks = {h.run.id: h.task for h in handles if h.task is not None}
    finishing = [tasks[run_id] for run_id in plan.finish if run_id in tasks]
    if finishing:
        count = len(finishing)
        runs = "run" if count == 1 else "runs"
        logger.info("Waiting up to %gs for %d %s to finish", grace_seconds, count, runs)
        await wait_unless_hurried(finishing, grace_seconds, hurry)
    _kill(executor, list(executor.active), KillReason.STOPPED)  # what outlived the grace
    executor.give_up_waiting()  # for the database: recovery stores what the journal kept
    await asyncio.gather(*tasks.values(), return_exceptions=True)


def _kill(executor: Executor, run_ids: Iterable[UUID], reason: KillReason) -> None:
    for run_id in run_ids:
        executor.kill(run_id, reason)


async def wait_unless_hurried(
    tasks: list[asyncio.Task[Any]], grace_seconds: float, hurry: asyncio.Event
) -> None:
    """Until ``tasks`` are done, ``grace_seconds`` have passed or ``hurry`` is set."""
    hurried = asyncio.ensure_future(hurry.wait())
    pending: set[asyncio.Future[Any]] = set(tasks)
    try:
        async with asyncio.timeout(grace_seconds):
            while pending and not hurried.done():
                done, _ = await asyncio.wait(
                    [*pending, hurried], return_when=asyncio.FIRST_COMPLETED
                )
                pending -= done
    except TimeoutError:
        pass  # the grace period is over: what still runs is stopped
    finally:
        hurried.cancel()
        await asyncio.gather(hurried, return_exceptions=True)

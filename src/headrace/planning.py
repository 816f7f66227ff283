"""The pure planning of scheduled runs: which runs a deployment's schedules call for now.

Nothing in this module reads the clock or touches I/O: the caller passes
``now`` and persists what ``plan_runs`` returns, deduplicating on
``PlannedRun.idempotency_key``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from headrace.schedules import (
    MAX_TIMES,
    DeploymentSchedule,
    next_times,
    require_aware,
    schedule_key,
)

MAX_CATCHUP_RUNS = 100
"""With catchup, at most this many (the most recent) missed runs per schedule are planned."""

_FIRST_LOOKBACK = timedelta(hours=1)


@dataclass(frozen=True)
class PlannedRun:
    """A run `plan_runs` asks the caller to create (idempotently, by key)."""

    scheduled_time: datetime
    schedule_key: str
    parameters: dict[str, Any]
    idempotency_key: str
    late: bool


def plan_runs(
    schedules: Sequence[DeploymentSchedule],
    *,
    now: datetime,
    last_planned: Mapping[str, datetime] | None,
    horizon: timedelta = timedelta(hours=1),
    max_runs: int = 3,
    catchup: bool = False,
    paused: bool = False,
) -> list[PlannedRun]:
    """Decide which scheduled runs should exist now; the caller persists them.

    Per active schedule: the next few runs or the next `horizon`, whichever is
    fewer, plus runs missed since `last_planned[schedule_key]` (the latest
    scheduled time already created for it): only the most recent one, or with
    `catchup` up to `MAX_CATCHUP_RUNS` of the most recent. A schedule with no
    entry is new and has missed nothing. Missed runs (times in
    (last_planned, now]) are marked `late`.
    """
    require_aware("now", now)
    if paused:
        return []
    planned: dict[str, PlannedRun] = {}
    for deployment_schedule in schedules:
        if not deployment_schedule.active:
            continue
        key = schedule_key(deployment_schedule)
        since = (last_planned or {}).get(key)
        missed = [] if since is None else _missed_times(deployment_schedule, since, now, catchup)
        upcoming = next_times(
            deployment_schedule, after=now, until=now + horizon, count=max(max_runs, 0)
        )
        for time in missed + upcoming:
            run = _planned_run(deployment_schedule, key, time, late=time <= now)
            planned[run.idempotency_key] = run
    return sorted(planned.values(), key=lambda run: (run.scheduled_time, run.schedule_key))


def _planned_run(
    schedule: DeploymentSchedule, key: str, time: datetime, *, late: bool
) -> PlannedRun:
    return PlannedRun(
        scheduled_time=time,
        schedule_key=key,
        parameters=dict(schedule.parameters),
        idempotency_key=f"scheduled:{key}:{time.isoformat()}",
        late=late,
    )


def _missed_times(
    schedule: DeploymentSchedule, since: datetime, now: datetime, catchup: bool
) -> list[datetime]:
    """The most recent fire times in (since, now], widening the look-back until found.

    Scanning from `since` forward would be slow (and hit the cap) after a long
    outage of a frequent schedule; the newest times are the ones wanted.
    """
    require_aware("last_planned", since)
    keep = MAX_CATCHUP_RUNS if catchup else 1
    lookback = _FIRST_LOOKBACK
    while True:
        start = since if now - since <= lookback else now - lookback
        times = _times_between(schedule, start, now, keep)
        if len(times) >= keep or start == since:
            return times
        lookback *= 2


def _times_between(
    schedule: DeploymentSchedule, start: datetime, end: datetime, keep: int
) -> list[datetime]:
    """The last `keep` fire times in (start, end], reading in capped batches."""
    recent: deque[datetime] = deque(maxlen=keep)
    while True:
        batch = next_times(schedule, after=start, until=end, count=MAX_TIMES)
        recent.extend(batch)
        if len(batch) < MAX_TIMES:
            return list(recent)
        start = batch[-1]

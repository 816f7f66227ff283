"""Runs ended per hour for the overview's chart, with the hours that have passed kept.

A run's end time is written as it ends, so an hour long past gains no runs:
its counts are read once per server. The last ``FRESH_HOURS`` hours are read
at every call (a runner's clock, or a slow write, may still add to them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from headrace.runner.server.ui.charts import HOURS
from headrace.states import StateType
from headrace.store import AsyncStore

FRESH_HOURS = 2
HOUR_FORMAT = "%Y-%m-%d %H"

Counts = dict[tuple[str, StateType], int]


class HourlyCounts:
    """The last ``HOURS`` hours' counts by final state: past hours cached, recent ones read."""

    def __init__(self) -> None:
        self._kept: dict[str, dict[StateType, int]] = {}

    async def read(self, store: AsyncStore, now: datetime) -> Counts:
        current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        fresh_since = current - timedelta(hours=FRESH_HOURS - 1)
        past = [fresh_since - timedelta(hours=i) for i in range(HOURS - FRESH_HOURS, 0, -1)]
        missing = [hour for hour in past if hour.strftime(HOUR_FORMAT) not in self._kept]
        if missing:
            rows = await store.count_ended_by_hour(missing[0], fresh_since)
            found: dict[str, dict[StateType, int]] = {}
            for label, state, n in rows:
                found.setdefault(label, {})[state] = n
            for moment in past:
                key = moment.strftime(HOUR_FORMAT)
                self._kept.setdefault(key, found.get(key, {}))
            wanted = {hour.strftime(HOUR_FORMAT) for hour in past}
            self._kept = {k: v for k, v in self._kept.items() if k in wanted}
        counts: Counts = {
            (hour, state): n for hour, states in self._kept.items() for state, n in states.items()
        }
        for hour, state, n in await store.count_ended_by_hour(fresh_since):
            counts[(hour, state)] = n
        return counts

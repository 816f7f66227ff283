"""Run logs on their way to the store: echoed to the console at once, written in batches.

Two limits keep one run from filling the database: a line over
``HEADRACE_LOG_LINE_LIMIT_CHARS`` is stored once, cut, with a marker; and past
``HEADRACE_RUN_LOG_LIMIT_BYTES`` of an attempt's lines nothing more of it is stored
(nor echoed), and its log ends with one line saying how much was dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from headrace.flow_runs import LogRecord
from headrace.process.pipes import cut_line
from headrace.runner.batching import DelayedFlush
from headrace.runner.streaks import FailureStreak
from headrace.settings import LOG_LINE_LIMIT_CHARS, RUN_LOG_LIMIT_BYTES
from headrace.store import AsyncStore

logger = logging.getLogger("headrace.flow_runs")

FLUSH_INTERVAL_SECONDS = 0.1
FLUSH_BATCH = 500
RUN_LINE = "run_line"
"""The echoed record's copy of the line alone: the JSON log format's ``message``."""
RUNNING_WAIT_SECONDS = 30.0
"""How long lines wait for their run's RUNNING to be stored before they are written anyway."""


class _Budget:
    """What is left of one attempt's log limit, and what was dropped past it."""

    __slots__ = ("dropped", "left")

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.dropped = 0

    def take(self, size: int) -> bool:
        """Whether a line of ``size`` bytes is stored: none is once one did not fit."""
        if self.dropped or size > self.left:
            self.dropped += size
            return False
        self.left -= size
        return True


class LogSink(DelayedFlush):
    """Collects log lines from every run's process and writes them in few transactions."""

    def __init__(
        self,
        store: AsyncStore,
        *,
        run_limit_bytes: int = RUN_LOG_LIMIT_BYTES,
        line_limit_chars: int = LOG_LINE_LIMIT_CHARS,
    ) -> None:
        self._store = store
        self.run_limit_bytes = run_limit_bytes
        self.line_limit_chars = line_limit_chars
        self._budgets: dict[UUID, _Budget] = {}
        self._pending: list[LogRecord] = []
        self._after: set[asyncio.Future[Any]] = set()
        super().__init__()
        self._lock = asyncio.Lock()
        self._failing = FailureStreak(
            logger, "Storing run log lines", meanwhile="lines not stored are on the console only"
        )
        self.lines_lost = 0
        """Lines the database did not take (they were on the console)."""

    def add(
        self,
        flow_run_id: UUID,
        run_name: str,
        level: int,
        message: str,
        ts: float,
        after: asyncio.Future[Any] | None = None,
        cut: int = 0,
        fields: dict[str, object] | None = None,
    ) -> None:
        """Queue a line; it is stored once ``after`` (the write of its run's RUNNING) is done.

        ``cut``: characters of the line its reader already left out. ``fields``: what the
        echoed line carries besides (the run's id, name, deployment, attempt).
        """
        message = cut_line(message, self.line_limit_chars, cut)
        budget = self._budgets.get(flow_run_id)
        if budget is None:
            budget = self._budgets[flow_run_id] = _Budget(self.run_limit_bytes)
        if not budget.take(len(message.encode(errors="replace"))):
            return
        self._queue(flow_run_id, run_name, level, message, ts, after, fields)

    def end_attempt(
        self, flow_run_id: UUID, run_name: str, fields: dict[str, object] | None = None
    ) -> None:
        """The attempt's process has ended: its log ends with what the limit dropped, if any."""
        budget = self._budgets.pop(flow_run_id, None)
        if budget is None or not budget.dropped:
            return
        message = (
            f"{budget.dropped:,} bytes of log dropped "
            f"(limit {self.run_limit_bytes:,} bytes per run: HEADRACE_RUN_LOG_LIMIT_BYTES)"
        )
        self._queue(flow_run_id, run_name, logging.WARNING, message, time.time(), None, fields)

    def _queue(
        self,
        flow_run_id: UUID,
        run_name: str,
        level: int,
        message: str,
        ts: float,
        after: asyncio.Future[Any] | None,
        fields: dict[str, object] | None,
    ) -> None:
        if after is not None and not after.done():
            self._after.add(after)
        extra = {"flow_run_id": str(flow_run_id), "flow_run_name": run_name, **(fields or {})}
        extra[RUN_LINE] = message
        logger.log(level, "%s | %s", run_name, message, extra=extra)
        self._pending.append(
            LogRecord(
                flow_run_id=flow_run_id,
                level=level,
                message=message,
                timestamp=datetime.fromtimestamp(ts, UTC),
            )
        )
        if len(self._pending) >= FLUSH_BATCH:
            self._schedule(0)
        elif self._flush_task is None:
            self._schedule(FLUSH_INTERVAL_SECONDS)

    async def flush(self) -> None:
        """Write everything collected so far (a run's lines land before its final state)."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch:
                return
            after, self._after = self._after, set()
            if after:
                # Readers never see a line of a run the store still calls PENDING.
                await asyncio.wait(after, timeout=RUNNING_WAIT_SECONDS)
            try:
                await self._store.write_logs(batch)
            except Exception as exc:
                self.lines_lost += len(batch)
                self._failing.failed(exc)
            else:
                self._failing.succeeded()

"""Run logs on their way to the store: echoed to the console at once, written in batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from headrace.flow_runs import LogRecord
from headrace.store import AsyncStore

logger = logging.getLogger("headrace.flow_runs")

FLUSH_INTERVAL_SECONDS = 0.1
FLUSH_BATCH = 500
RUNNING_WAIT_SECONDS = 30.0
"""How long lines wait for their run's RUNNING to be stored before they are written anyway."""


class LogSink:
    """Collects log lines from every run's process and writes them in few transactions."""

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self._pending: list[LogRecord] = []
        self._after: set[asyncio.Future[Any]] = set()
        self._flush_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(
        self,
        flow_run_id: UUID,
        run_name: str,
        level: int,
        message: str,
        ts: float,
        after: asyncio.Future[Any] | None = None,
    ) -> None:
        """Queue a line; it is stored once ``after`` (the write of its run's RUNNING) is done."""
        if after is not None and not after.done():
            self._after.add(after)
        logger.log(level, "%s | %s", run_name, message, extra={"flow_run_id": str(flow_run_id)})
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

    def _schedule(self, delay: float) -> None:
        if self._flush_task is not None and delay > 0:
            return
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_later(delay))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush_task = None
        await self.flush()

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
            except Exception:
                logger.exception(
                    "Could not store %d log lines; they are on the console", len(batch)
                )

    async def close(self) -> None:
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
            self._flush_task = None
        await self.flush()

"""Writes gathered into batches: flushed when a batch is full, or a moment after its first item.

The log sink and the task-run sink both collect what runs report and write it in
one statement now and then; this is their shared timer.
"""

from __future__ import annotations

import asyncio
import contextlib


class DelayedFlush:
    """Schedules ``flush()`` now or after a delay, at most one pending timer at a time."""

    def __init__(self) -> None:
        self._flush_task: asyncio.Task[None] | None = None

    async def flush(self) -> None:
        raise NotImplementedError

    def _schedule(self, delay: float) -> None:
        if self._flush_task is not None and delay > 0:
            return
        self._flush_task = asyncio.get_running_loop().create_task(self._flush_later(delay))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush_task = None
        await self.flush()

    async def close(self) -> None:
        """Stop the timer and write what is left."""
        if self._flush_task is not None:
            self._flush_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flush_task
            self._flush_task = None
        await self.flush()

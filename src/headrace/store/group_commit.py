"""Group commit: concurrent writes of one kind share a single transaction.

While one batch is being written, new requests queue; the next batch takes
them all. Under load this turns N transactions into a few, and with no load a
request is written at once, as before.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH = 256


class _Queue(Generic[T, R]):
    def __init__(self) -> None:
        self.pending: list[tuple[T, asyncio.Future[R]]] = []
        self.task: asyncio.Task[None] | None = None


class GroupCommit(Generic[T, R]):
    """Feeds queued items to ``write_batch`` (run through ``submit``), one batch at a time.

    ``write_batch`` returns one result per item; an item's result may be an
    exception, which is raised to that item's caller only. An exception raised
    by ``write_batch`` itself fails the whole batch. Each event loop has its own
    queue, so a store shared by threads never crosses loops.
    """

    def __init__(
        self,
        write_batch: Callable[[Sequence[T]], Sequence[R | BaseException]],
        submit: Callable[[Callable[[], Sequence[R | BaseException]]], Future[Any]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._write_batch = write_batch
        self._submit = submit
        self._max_batch = max_batch
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue[T, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, item: T) -> R:
        return await self.enqueue(item)

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` now (it is written after everything queued before it)."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future: asyncio.Future[R] = loop.create_future()
        queue.pending.append((item, future))
        if queue.task is None or queue.task.done():
            queue.task = loop.create_task(self._drain(queue))
        return future

    async def _drain(self, queue: _Queue[T, R]) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0)  # let the callers of this loop iteration join the first batch
        while queue.pending:
            size = self._max_batch
            batch, queue.pending = queue.pending[:size], queue.pending[size:]
            items = [item for item, _ in batch]
            try:
                results = await asyncio.wrap_future(
                    self._submit(functools.partial(self._write_batch, items)), loop=loop
                )
            except Exception as exc:  # the whole batch failed: tell every caller
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

"""Live pages: one watcher per server tells every open page that runs changed.

The watcher listens to the store's change feed (runs queued or cancelled, by
this process or others) and, while any page listens, reads once a second when
a run last changed and the newest log line's id (one indexed query for all
open pages together, which also catches state changes and log lines the feed
does not announce). Each open page holds a one-slot queue and re-reads only
its own region (or its run's new log lines) when told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime

from headrace.exceptions import StoreError
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
STOP_CHECK_SECONDS = 0.5


class LiveRuns:
    """Tells listening pages that runs changed; costs nothing while nobody listens."""

    def __init__(self, store: AsyncStore, *, watch_feed: bool = False) -> None:
        self.store = store
        self._watch_feed = watch_feed
        self._listeners: set[asyncio.Queue[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._feed: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    async def changes(self, stop: Callable[[], bool]) -> AsyncIterator[None]:
        """Yield whenever runs may have changed (at most once per ``CHECK_SECONDS``); an
        idle ``None`` every ``KEEPALIVE_SECONDS`` too, so a gone client is noticed. Ends
        within ``STOP_CHECK_SECONDS`` of ``stop()`` turning true (a server shutting down)."""
        queue: asyncio.Queue[None] = asyncio.Queue(maxsize=1)
        queue.put_nowait(None)  # once at once: what changed between the page and this stream
        self._listeners.add(queue)
        self._ensure_running()
        try:
            idle = 0.0
            while not stop():
                try:
                    await asyncio.wait_for(queue.get(), STOP_CHECK_SECONDS)
                except TimeoutError:
                    idle += STOP_CHECK_SECONDS
                    if idle < KEEPALIVE_SECONDS:
                        continue
                idle = 0.0
                yield None
        finally:
            self._listeners.discard(queue)

    def _ensure_running(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._loop = asyncio.get_running_loop()
        if self._unsubscribe is None:
            self._unsubscribe = self.store.changes.subscribe(self._on_feed)
        if self._watch_feed and (self._feed is None or self._feed.done()):
            self._feed = asyncio.create_task(self.store.changes.watch(), name="headrace-ui-feed")
        self._task = asyncio.create_task(self._check_loop(), name="headrace-ui-live")

    def _on_feed(self, why: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _check_loop(self) -> None:
        last: tuple[datetime | None, int | None] | None = None
        while self._listeners:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), CHECK_SECONDS)
            self._wake.clear()
            try:
                current = await self.store.last_changes()
            except StoreError as exc:
                logger.warning("The dashboard could not read for changes: %s", exc)
                continue
            if last is not None and current != last:
                self._tell()
            last = current

    def _tell(self) -> None:
        for queue in list(self._listeners):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(None)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in (self._task, self._feed):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

"""The store's own thread: one at a time, and the work somebody is waiting on first.

SQLite has one writer, so the store runs its work on a single thread. Not all
work is equal: a trigger's insert holds up an HTTP answer, while recording that
a run finished holds up nobody. ``StoreWorker`` runs queued work by priority
(lower first), in arrival order within a priority. On PostgreSQL, callers have
a pool and claims and bookkeeping queue on one such thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

URGENT = 0
"""Somebody waits for the answer (an HTTP request, a client call)."""
DISPATCH = 1
"""A queued run waits for it (claims): after the callers, before the bookkeeping."""
BACKGROUND = 2
"""Bookkeeping nobody waits on (state changes of running runs, logs)."""
UPKEEP = 3
"""Deleting old runs (retention): only when nothing else is queued."""


class StoreWorker:
    """A single worker thread with a priority queue."""

    def __init__(self, name: str = "headrace-store") -> None:
        self._queue: list[tuple[int, int, Callable[[], Any], Future[Any]]] = []
        self._order = itertools.count()
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], priority: int = URGENT) -> Future[T]:
        future: Future[T] = Future()
        with self._ready:
            if self._closed:
                raise RuntimeError("The store is closed")
            heapq.heappush(self._queue, (priority, next(self._order), fn, future))
            self._ready.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                _, _, fn, future = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def shutdown(self, wait: bool = True) -> None:
        """Finish what is queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

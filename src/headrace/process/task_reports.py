"""Task run reports on their way to the pipe: batched, so a task call costs no write of its own.

A task call reports twice (started, ended) and a cached result once more; a
pipe write each would cost more than the call itself. Reports wait here until
``MAX_BATCH`` task runs have news or ``BATCH_DELAY_SECONDS`` has passed since
the first one waiting (a timer thread sends them then), and the run's process
sends what is left before it reports its end. Only the latest report of each
task run is kept: one that started and ended within a batch is sent once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from headrace.process.protocol import ChildEvent, TaskCached, TaskRunEvents, TaskRunUpdate

MAX_BATCH = 500
BATCH_DELAY_SECONDS = 0.05


class TaskReports:
    """Collects task run updates and cache entries and sends them as ``TaskRunEvents``."""

    def __init__(
        self,
        send: Callable[[ChildEvent], None],
        *,
        max_batch: int = MAX_BATCH,
        delay_seconds: float = BATCH_DELAY_SECONDS,
    ) -> None:
        self._send = send
        self._max_batch = max_batch
        self._delay_seconds = delay_seconds
        self._updates: dict[str, TaskRunUpdate] = {}
        self._cached: list[TaskCached] = []
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    def update(self, report: TaskRunUpdate) -> None:
        with self._lock:
            self._updates[report.id] = report
            self._waiting()

    def cache(self, entry: TaskCached) -> None:
        with self._lock:
            self._cached.append(entry)
            self._waiting()

    def _waiting(self) -> None:
        if len(self._updates) + len(self._cached) >= self._max_batch:
            self.flush()
        elif self._timer is None:
            self._timer = threading.Timer(self._delay_seconds, self.flush)
            self._timer.daemon = True
            self._timer.start()

    def flush(self) -> None:
        """Send what waits now (in order: the lock is held while it is sent)."""
        with self._lock:
            timer, self._timer = self._timer, None
            if timer is not None and timer is not threading.current_thread():
                timer.cancel()
            if not self._updates and not self._cached:
                return
            updates, self._updates = list(self._updates.values()), {}
            cached, self._cached = self._cached, []
            self._send(TaskRunEvents(updates, cached))

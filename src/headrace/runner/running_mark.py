"""An attempt's RUNNING, written a little late.

RUNNING is written ``RUNNING_WRITE_DELAY_SECONDS`` after the process says it
started, or at its first log line, or at its end, whichever comes first: a
quiet run shorter than that records RUNNING and its end in one transaction
(the state history still shows both, with the child's own times).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from headrace.exceptions import InvalidStateTransition, StoreError
from headrace.flow_runs import FlowRun
from headrace.runner.outcome_writer import attempt_of
from headrace.states import State, StateType
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)

RUNNING_WRITE_DELAY_SECONDS = 0.02


class RunningMark:
    """One attempt's RUNNING: held back a moment, queued ahead of what must follow it."""

    def __init__(self, store: AsyncStore, run: FlowRun) -> None:
        self._store = store
        self._run = run
        self._timer: asyncio.TimerHandle | None = None
        self._args: tuple[datetime, int] = (datetime.min, 0)
        self.write: asyncio.Future[FlowRun] | None = None
        """The queued write, once queued: log lines are written after it."""

    def started(self, timestamp: float, pid: int) -> None:
        """The process said it runs: write RUNNING soon, with its own start time."""
        self._args = (datetime.fromtimestamp(timestamp, UTC), pid)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(RUNNING_WRITE_DELAY_SECONDS, self._queue)

    def flush(self) -> None:
        """Queue a RUNNING still held back now, ahead of what comes next, in the same batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._queue()

    def _queue(self) -> None:
        """Queue RUNNING (with the child's own start time); a cancel meanwhile makes it moot."""
        self._timer = None
        started, pid = self._args
        state = State(type=StateType.RUNNING, timestamp=started)
        self.write = self._store.queue_state(
            self._run.id,
            state,
            expected=[StateType.PENDING],
            attempt=attempt_of(self._run),
            pid=pid,
        )

    async def settle(self) -> None:
        """Wait for the write, if any; what it could not do is logged, never raised."""
        if self.write is None:
            return
        try:
            await self.write
        except InvalidStateTransition:
            pass  # cancelled before it ran: the cancellation path kills the process
        except StoreError:
            logger.exception("Could not record flow run %s as RUNNING", self._run.name)

"""A loop that runs a step every interval, sooner when woken, until stopped.

The runner has three: the poll (heartbeat, recovery, schedules, claims), the
dispatcher (claims the moment local work arrives or a slot frees) and the
cancellation watcher. Each waits on "interval elapsed, woken, or stopped";
none ever sleeps past a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from headrace.runner.streaks import FailureStreak

logger = logging.getLogger(__name__)


class Poller:
    """Calls ``step`` now, then whenever woken or ``interval()`` seconds have passed.

    A step that returns False did nothing (it waits on something else, as the
    dispatcher waits for the lease): a streak of failures neither grows nor ends.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[bool | None]],
        interval: Callable[[], float],
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.streak = FailureStreak(logger, f"The runner's {name}")
        self.steps = 0
        """Steps finished (failed ones too): 0 until the loop has run once."""

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run_once(self) -> bool:
        """One step; a failure is logged and reported, never raised."""
        self._wake.clear()
        try:
            done = await self._step()
        except Exception as exc:
            self.streak.failed(exc)  # its first failure, then a reminder a minute at most
            return False
        finally:
            self.steps += 1
        if done is not False:
            self.streak.succeeded()
        return True

    @property
    def failures(self) -> int:
        """Steps failed in a row, up to now."""
        return self.streak.failures

    async def run(self) -> None:
        while not self._stop.is_set():
            ok = await self.run_once()
            delay = self._interval() if ok else min(self._interval(), _backoff(self.failures))
            await self._wait(delay)

    async def _wait(self, seconds: float) -> None:
        waits = [
            asyncio.ensure_future(self._wake.wait()),
            asyncio.ensure_future(self._stop.wait()),
        ]
        try:
            await asyncio.wait(waits, timeout=max(seconds, 0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter


def _backoff(failures: int) -> float:
    return float(min(2 ** max(failures - 1, 0), 30))

"""SIGTERM and SIGINT as a request to stop, for as long as a block runs.

A serving process stops on either: the runner drains, then returns. Blocks
nest: the innermost callback hears the signal, and leaving it hands the
signals back to the block around it (``headrace serve`` remembers a signal
that lands before its runner is up; the runner handles them once it is).

A SIGTERM within a second of the last one heeded is the same request: a
service manager or a shell that signals every process of a service (systemd's
``KillMode=control-group``, ``kill -TERM`` of a list of pids, an init that
forwards to the group) can deliver it twice, and a second signal means "hurry".
A second Ctrl-C is always heeded: only a person presses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_WINDOW_SECONDS = 1.0
"""A SIGTERM this soon after the last one heeded is taken as the same one."""

OnStop = Callable[[signal.Signals], None]

_listening: list[tuple[asyncio.AbstractEventLoop, OnStop]] = []
"""The blocks inside which the stop signals are handled, outermost first (the signals
belong to the process, and to its main thread's loop)."""


@contextlib.contextmanager
def on_stop(callback: OnStop, *, enabled: bool = True) -> Iterator[None]:
    """Call ``callback(signum)`` on the running loop for each SIGTERM or SIGINT in the block.

    Off (``enabled=False``, or off the main thread, where Python cannot handle
    signals) the signals keep whatever handling they had: an application that
    runs the loop handles them itself.
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    entry = (asyncio.get_running_loop(), callback)
    _listening.append(entry)
    _install(*entry)
    try:
        yield
    finally:
        _listening.remove(entry)
        _restore(entry[0])


class _RepeatFilter:
    """Passes each stop signal on, but a SIGTERM only once within ``REPEAT_WINDOW_SECONDS``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_sigterm: float | None = None

    def heed(self, signum: signal.Signals) -> bool:
        if signum != signal.SIGTERM:
            return True
        now = self._clock()
        last, self._last_sigterm = self._last_sigterm, now
        if last is not None and now - last < REPEAT_WINDOW_SECONDS:
            self._last_sigterm = last  # measured from the one heeded
            logger.info("Received SIGTERM again within %gs: the same stop", REPEAT_WINDOW_SECONDS)
            return False
        return True


_repeats = _RepeatFilter()
"""One per process: the signals, and their repeats, belong to the process."""


def _deliver(callback: OnStop, signum: signal.Signals) -> None:
    if _repeats.heed(signum):
        callback(signum)


def _install(loop: asyncio.AbstractEventLoop, callback: OnStop) -> None:
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, _deliver, callback, signum)


def _restore(loop: asyncio.AbstractEventLoop) -> None:
    """Hand the signals to the innermost block still open, or back to Python's defaults."""
    outer = [entry for entry in _listening if entry[0] is loop]
    if outer:
        _install(*outer[-1])
    elif not loop.is_closed():
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)

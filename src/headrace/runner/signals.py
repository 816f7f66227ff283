"""SIGTERM and SIGINT as a request to stop, for as long as a block runs.

A serving process stops on either: the runner drains, then returns. Blocks
nest: the innermost callback hears the signal, and leaving it hands the
signals back to the block around it (``headrace serve`` remembers a signal
that lands before its runner is up; the runner handles them once it is).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

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


def _install(loop: asyncio.AbstractEventLoop, callback: OnStop) -> None:
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, callback, signum)


def _restore(loop: asyncio.AbstractEventLoop) -> None:
    """Hand the signals to the innermost block still open, or back to Python's defaults."""
    outer = [entry for entry in _listening if entry[0] is loop]
    if outer:
        _install(*outer[-1])
    elif not loop.is_closed():
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)

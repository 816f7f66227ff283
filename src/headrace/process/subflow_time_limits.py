"""A sync subflow's ``timeout_seconds``: a timer that interrupts its call where it runs.

On expiry the timer raises the limit's own exception in the call's thread, as a
cancel is (``subflow_cancels.raise_in``): in the main thread by a signal whose handler
raises it, so a sleep there ends at once; in another thread at the next line of Python
it runs, so a body looping over short sleeps stops within one of them, while one long
sleep (a single ``time.sleep(60)``, a blocking read) ends first, since no Python runs in
it. Never while the thread tells the runner something: it waits for the end of it.

Each limit raises a class of its own (a ``TimeoutError``), so with nested subflows each
limit applies, and the call whose limit it is tells it from an outer call's, which no
retry of the inner call may outlive.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from headrace.process import subflow_cancels as cancels


class Expired(TimeoutError):
    """A subflow's time limit ran out (each limit raises its own subclass of this)."""

    limit: Limit


@dataclass(eq=False)
class Limit:
    seconds: float
    message: str
    error: type[Expired] = field(init=False)
    thread: int = 0
    timer: threading.Timer | None = None
    active: bool = False
    fired: bool = False
    raised: bool = False

    def __post_init__(self) -> None:
        limit = self

        class LimitExpired(Expired):
            def __init__(self, *args: object) -> None:
                super().__init__(limit.message)
                limit.raised = True

        LimitExpired.limit = limit
        self.error = LimitExpired

    def timeout(self, exc: BaseException) -> TimeoutError:
        """The ``TimeoutError`` a caller sees for this limit's expiry, where it was raised."""
        return TimeoutError(self.message).with_traceback(exc.__traceback__)


def owner_of(exc: BaseException) -> Limit | None:
    """The limit ``exc`` is the expiry of, if it is one."""
    return exc.limit if isinstance(exc, Expired) else None


@contextlib.contextmanager
def running(limit: Limit) -> Iterator[None]:
    """Raise ``limit.error`` in this thread after ``limit.seconds``, within this block only."""
    limit.thread = threading.get_ident()
    limit.timer = threading.Timer(limit.seconds, _expire, (limit,))
    limit.timer.daemon = True
    limit.active = True
    limit.timer.start()
    try:
        yield
    finally:
        limit.timer.cancel()
        with cancels.lock():
            limit.active = False
            if limit.fired and not limit.raised:
                cancels.withdraw(limit.thread, limit.error)


def _expire(limit: Limit) -> None:
    """On the timer's thread: interrupt the limited call, if it still runs."""
    with cancels.lock():
        if not limit.active or limit.fired:
            return
        limit.fired = True
        cancels.raise_in(limit.thread, limit.error, lambda: limit.active)

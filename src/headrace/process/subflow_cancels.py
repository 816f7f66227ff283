"""Cancelling one subflow run inside its caller's process, and nothing else of the caller.

The runner tells the process which child to cancel (``runner_messages.py``); this
interrupts the child's body where it runs, as the function's caller would see a
cancelled run: ``FlowRunCancelled`` is raised in it.

- A sync child in the main thread: a signal to the main thread (``INTERRUPT_SIGNAL``)
  whose handler raises, so a sleep or a blocking wait ends at once. Never while the
  process tells the runner something (``shielded``): a message cut in half would end
  the whole run's reporting.
- A sync child in another thread: the exception is set on that thread
  (``PyThreadState_SetAsyncExc``), raised at the next line of Python it runs. Never
  while that thread sends the runner a message (``sending``/``sent``): the cancel
  waits for the end of it, then is set on the thread by the thread itself.
- An async child: the task that awaits it is cancelled; the ``CancelledError``
  becomes ``FlowRunCancelled`` where the child's call returns.

The children a cancelled child called end with it, CANCELLED, whatever ran them.
A subflow's time limit is raised the same way (``raise_in``, ``subflow_time_limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from headrace.exceptions import FlowRunCancelled

INTERRUPT_SIGNAL = signal.SIGUSR2
"""Sent by this process to its own main thread to interrupt a sync subflow's body there."""


@dataclass(eq=False)
class Call:
    """A subflow's run being executed in this process: where its body runs."""

    id: str
    name: str
    parent_id: str
    thread: int
    task: asyncio.Task[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    in_body: bool = False
    """A sync call outside the main thread: its body (not its bookkeeping) runs now."""
    delivered: bool = False
    """An async call: its task was cancelled for this call's own cancel."""


_lock = threading.RLock()  # the signal handler may take it in the main thread
_calls: dict[str, Call] = {}
_cancelled: set[str] = set()
_pending: list[str] = []
"""Cancels to raise in the main thread, once it is out of every shielded part."""
_raises: list[tuple[type[BaseException], Callable[[], bool]]] = []
"""Other exceptions to raise in the main thread (``raise_in``), once it is out of every
shielded part, if still wanted then."""
_shield_depth = 0
"""The main thread is telling the runner something (main thread only)."""
_sending: set[int] = set()
"""Other threads telling the runner something now: no cancel is set on them meanwhile."""
_deferred: dict[int, tuple[type[BaseException], Callable[[], bool]]] = {}
"""Threads among ``_sending`` with an exception to set on them once their message is out,
if it is still wanted then (``raise_in``)."""


def cancelled_error(call: Call) -> FlowRunCancelled:
    return FlowRunCancelled(f"Flow run {call.name} was cancelled", call.id)


def _cancelled_type(call: Call) -> type[FlowRunCancelled]:
    """``FlowRunCancelled`` that says which run, when built with no arguments: an exception
    set on another thread is raised as its bare class, called."""
    message, flow_run_id = f"Flow run {call.name} was cancelled", call.id

    def __init__(self: FlowRunCancelled, *_: object) -> None:
        FlowRunCancelled.__init__(self, message, flow_run_id)

    namespace = {"__init__": __init__, "__module__": FlowRunCancelled.__module__}
    return type("FlowRunCancelled", (FlowRunCancelled,), namespace)


def install() -> None:
    """Hear cancels in this run's process (called once, at start, in the main thread)."""
    signal.signal(INTERRUPT_SIGNAL, _on_interrupt)


def enter(call: Call) -> None:
    with _lock:
        _calls[call.id] = call


def leave(call: Call) -> None:
    with _lock:
        _calls.pop(call.id, None)
        _cancelled.discard(call.id)
        with contextlib.suppress(ValueError):
            _pending.remove(call.id)


def cancel_of(call: Call) -> Call | None:
    """The cancelled run among ``call`` and the subflows that called it, nearest first."""
    with _lock:
        current: Call | None = call
        while current is not None:
            if current.id in _cancelled:
                return current
            current = _calls.get(current.parent_id)
        return None


def parent_of(call: Call) -> Call | None:
    with _lock:
        return _calls.get(call.parent_id)


def request(child_id: str) -> None:
    """Cancel the subflow run ``child_id`` if this process executes it (any thread)."""
    with _lock:
        call = _calls.get(child_id)
        if call is None or child_id in _cancelled:
            return  # ended already, or told already
        _cancelled.add(child_id)
        reached = [call, *_descendants(child_id)]
    interrupted: set[object] = set()
    for each in reached:
        place: object = each.task if each.task is not None else each.thread
        if place not in interrupted:
            interrupted.add(place)
            _interrupt(each, call)


def _descendants(child_id: str) -> list[Call]:
    def under(call: Call) -> bool:
        parent = _calls.get(call.parent_id)
        while parent is not None:
            if parent.id == child_id:
                return True
            parent = _calls.get(parent.parent_id)
        return False

    return [call for call in _calls.values() if under(call)]


def _interrupt(where: Call, cancelled: Call) -> None:
    if where.task is not None and where.loop is not None:
        with contextlib.suppress(RuntimeError):  # its loop has closed: the call has ended
            where.loop.call_soon_threadsafe(_cancel_task, where, cancelled)
    elif where.thread == _main_ident():
        with _lock:
            _pending.append(cancelled.id)
        signal.pthread_kill(where.thread, INTERRUPT_SIGNAL)
    else:
        with _lock:
            if where.in_body:
                raise_in(
                    where.thread, _cancelled_type(cancelled), lambda: _cancel_wanted(where.thread)
                )


def _cancel_wanted(thread: int) -> bool:
    """A cancelled call's body runs in ``thread`` now (called under ``_lock``)."""
    return _wanted_cancel(thread) is not None


def _wanted_cancel(thread: int) -> Call | None:
    """The cancelled call whose cancel is to be raised in ``thread``, if any."""
    for call in _calls.values():
        if call.thread == thread and call.in_body and (cancelled := cancel_of(call)) is not None:
            return cancelled
    return None


def raise_in(thread: int, exc: type[BaseException], wanted: Callable[[], bool]) -> None:
    """Raise ``exc`` in ``thread`` at its next line of Python, or once the message it sends
    now is out if ``wanted()`` still holds then (called under ``_lock``).

    In the main thread it is the signal's handler that raises it, so a sleep there ends at
    once. In another, one exception waits for a thread at a time: the last one set replaces
    another.
    """
    if thread == _main_ident():
        _raises.append((exc, wanted))
        signal.pthread_kill(thread, INTERRUPT_SIGNAL)
    elif thread in _sending:
        _deferred[thread] = (exc, wanted)
    else:
        _set_async_exc(thread, exc)


def withdraw(thread: int, exc: type[BaseException]) -> None:
    """``exc`` is no longer to be raised in ``thread`` if it waits still; a cancel still
    wanted there is set again (called in ``thread``)."""
    with _lock:
        if thread == _main_ident():
            _raises[:] = [each for each in _raises if each[0] is not exc]
            return
        waiting = _deferred.get(thread)
        if waiting is not None and waiting[0] is exc:
            del _deferred[thread]
            return
        if waiting is None:
            _set_async_exc(thread, None)
            cancelled = _wanted_cancel(thread)
            if cancelled is not None:
                _set_async_exc(thread, _cancelled_type(cancelled))


def _cancel_task(where: Call, cancelled: Call) -> None:
    """On the task's loop: cancel it unless the call has ended meanwhile."""
    task = where.task
    if task is None or task.done() or _calls.get(where.id) is not where:
        return
    where.delivered = where is cancelled
    task.cancel(f"Flow run {cancelled.name} was cancelled")


def uncancel(call: Call) -> None:
    """Take back the task cancel that delivered ``call``'s own cancel: its caller goes on."""
    if call.delivered and call.task is not None and call.task.cancelling():
        call.task.uncancel()
        call.delivered = False


def body_entered(call: Call) -> None:
    with _lock:
        call.in_body = True


def body_left(call: Call) -> None:
    """Past its body: no cancel is raised in this thread from here (a pending one is cleared)."""
    with _lock:
        if call.in_body and call.thread != _main_ident():
            _set_async_exc(call.thread, None)
            _deferred.pop(call.thread, None)
        call.in_body = False


def _set_async_exc(thread: int, exc: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exc) if exc is not None else None
    )


def _on_interrupt(signum: int, frame: Any) -> None:
    """In the main thread: raise the first pending cancel, else the first other exception
    still wanted, unless it is shielded now."""
    if _shield_depth:
        return  # raised when the shield lifts
    with _lock:
        while _pending:
            call = _calls.get(_pending.pop(0))
            if call is not None:
                raise cancelled_error(call)
        while _raises:
            exc, wanted = _raises.pop(0)
            if wanted():
                raise exc()


def hold() -> None:
    """From here until ``release``, no cancel is raised in the main thread (called in it)."""
    global _shield_depth
    _shield_depth += 1


def release() -> None:
    global _shield_depth
    _shield_depth -= 1
    if not _shield_depth and (_pending or _raises):
        signal.pthread_kill(threading.get_ident(), INTERRUPT_SIGNAL)  # raised here, now


def sending() -> None:
    """From here until ``sent``, no cancel is set on this thread (not the main thread).

    Call it inside the ``try`` whose ``finally`` calls ``sent``. Sound because a
    cancel is set on a thread only under ``_lock`` and only while it is not here:
    one set before this registers the thread is raised at the thread's next call,
    in this function at the latest, before any of the message is sent; and while
    the thread is registered none is set, so none can be raised in ``sent`` before
    it unregisters.
    """
    ident = threading.get_ident()
    with _lock:
        _sending.add(ident)


def sent() -> None:
    """End of ``sending``: a cancel that waited for it is set on this thread now."""
    ident = threading.get_ident()
    with _lock:
        _sending.discard(ident)
        waiting = _deferred.pop(ident, None)
        if waiting is not None and waiting[1]():
            _set_async_exc(ident, waiting[0])  # raised as this returns


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """No cancel is raised in the main thread within this (it waits for the end of it)."""
    if threading.get_ident() != _main_ident():
        yield
        return
    hold()
    try:
        yield
    finally:
        release()


def lock() -> contextlib.AbstractContextManager[bool]:
    """Held while an exception is set on a thread, or a call's place changes."""
    return _lock


def _main_ident() -> int | None:
    return threading.main_thread().ident

"""Subflows: a flow called inside a running flow runs in the same process, as a child run.

The child run has its own id, state history, retries, timeout and logs. The
run's process never opens the database: it reports the child's start, retries
and end over the run's event pipe (``protocol.py``, "child flow runs") and the
runner records them. The call returns what the function returned, and raises
what it raised once its retries are spent, as calling the function would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import uuid4

from pydantic_core import to_jsonable_python

from headrace import runtime
from headrace.exceptions import FlowRunCancelled
from headrace.jsonvalues import storable
from headrace.names import generate_run_name
from headrace.process import subflow_cancels as cancels
from headrace.process import subflow_time_limits as time_limits
from headrace.process.protocol import (
    ChildEvent,
    ChildJob,
    ChildRunEnded,
    ChildRunRestarted,
    ChildRunRetrying,
    ChildRunStarted,
)
from headrace.process.results import RESULT_STORAGE_VARIABLE
from headrace.process.subflow_output import SubflowStream, subflow_streams
from headrace.process.taskruns import flush_task_runs
from headrace.runtime import FlowRunContext, entered_subflow_run, set_subflow_call

if TYPE_CHECKING:
    from headrace.flows import Flow

logger = logging.getLogger("headrace.subflows")


class EventSender(Protocol):
    def send(self, event: ChildEvent) -> None: ...


@dataclass
class _Process:
    """This run's process, as its subflows need it."""

    reporter: EventSender
    flow_run_id: str
    result_storage: str | None = None
    streams: tuple[SubflowStream, ...] = ()
    listen: Callable[[], None] | None = None
    """Starts hearing the runner's cancels of children: at the first child, so a run
    that calls no flow pays nothing for it."""


_process: _Process | None = None


def install(reporter: EventSender, job: ChildJob, listen: Callable[[], None] | None = None) -> None:
    """Make flows called inside this process's run child runs of it (called once, at start).

    The runner's settings become this process's too (``ChildJob.environment``), so
    ``get_client()`` and ``run_deployment`` in a flow reach the runner's database.
    """
    global _process
    os.environ.update(job.environment)
    storage = job.environment.get(RESULT_STORAGE_VARIABLE)
    _process = _Process(reporter, job.flow_run_id, storage, listen=listen)
    streams = subflow_streams(sys.stdout, sys.stderr, logging_run_id, reporter.send)
    sys.stdout, sys.stderr = streams
    _process.streams = streams
    cancels.install()
    set_subflow_call(call_subflow)


def cancel_requested(child_id: str) -> None:
    """The runner asks to cancel the subflow run ``child_id`` (heard on another thread)."""
    cancels.request(child_id)


def logging_run_id() -> str | None:
    """The subflow run a log record written now belongs to (None: the process's own run)."""
    run_id = runtime.flow_run.id
    if _process is None or run_id is None or run_id == _process.flow_run_id:
        return None
    return run_id


@dataclass
class _ChildRun:
    flow: Flow[Any, Any]
    context: FlowRunContext
    run_count: int = 1

    @property
    def id(self) -> str:
        assert self.context.id is not None
        return self.context.id

    @property
    def attempts_left(self) -> int:
        return self.flow.retries + 1 - self.run_count


def call_subflow(flow: Flow[Any, Any], arguments: dict[str, Any]) -> Any:
    """Run ``flow`` as a child run of the current run: its result, or what it raised.

    Cancelled on its own, the child ends CANCELLED and the call raises ``FlowRunCancelled``.
    """
    if flow.is_async:
        return _call_async(flow, arguments)
    with cancels.shielded():
        child, call = _start(flow, arguments)
    try:
        try:
            result = _attempts(child, call, arguments)
        finally:
            with cancels.shielded():
                cancels.body_left(call)
    except BaseException as exc:
        with cancels.shielded():
            cancelled = cancels.cancel_of(call)
            cancels.leave(call)
            if cancelled is None:
                raise
            raise _ended_cancelled(child, call, cancelled) from exc
    with cancels.shielded():
        cancelled = cancels.cancel_of(call)  # its body may have caught the cancel
        cancels.leave(call)
        if cancelled is not None:
            raise _ended_cancelled(child, call, cancelled)
        _completed(child, result)
    return result


def _attempts(child: _ChildRun, call: cancels.Call, arguments: dict[str, Any]) -> Any:
    """Run the body until an attempt returns, or raise what the last one raised."""
    flow = child.flow
    while True:
        limit = _limit(flow.timeout_seconds)
        try:
            cancels.body_entered(call)
            with entered_subflow_run(child.context), _time_limit(limit):
                return flow.fn(**arguments)
        except Exception as raised:
            with cancels.shielded():
                cancels.body_left(call)
                if cancels.cancel_of(call) is not None:
                    raise
                expired = time_limits.owner_of(raised)
                exc = limit.timeout(raised) if limit is not None and expired is limit else raised
                if expired is not None and expired is not limit:  # an outer call's limit
                    _end(child, "FAILED", _failure_message(expired.timeout(raised)))
                    raise
                delay = _failed(child, exc)
            if delay is None:
                if exc is raised:
                    raise
                raise exc from None
            time.sleep(delay)  # unshielded: a cancel ends the wait
            with cancels.shielded():
                if cancels.cancel_of(call) is not None:
                    raise cancels.cancelled_error(call) from exc
                _restart(child)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: no retry helps
            with cancels.shielded():
                cancels.body_left(call)
                if cancels.cancel_of(call) is None:
                    _end(child, "FAILED", _failure_message(exc))
            raise


async def _call_async(flow: Flow[Any, Any], arguments: dict[str, Any]) -> Any:
    child, call = _start(flow, arguments, asyncio.current_task())
    try:
        result = await _async_attempts(child, call, arguments)
    except BaseException as exc:  # CancelledError too: it is how a cancel reaches the body
        cancelled = cancels.cancel_of(call)
        cancels.uncancel(call)
        cancels.leave(call)
        if cancelled is None:
            raise
        error = _ended_cancelled(child, call, cancelled)
        if cancelled is not call and isinstance(exc, asyncio.CancelledError):
            raise  # on to the cancelled caller's call, which takes the task's cancel back
        raise error from exc
    cancelled = cancels.cancel_of(call)
    cancels.uncancel(call)
    cancels.leave(call)
    if cancelled is not None:
        raise _ended_cancelled(child, call, cancelled)
    _completed(child, result)
    return result


async def _async_attempts(child: _ChildRun, call: cancels.Call, arguments: dict[str, Any]) -> Any:
    flow = child.flow
    while True:
        try:
            with entered_subflow_run(child.context):
                return await _awaited(flow.fn(**arguments), flow.timeout_seconds)
        except Exception as exc:
            if cancels.cancel_of(call) is not None:
                raise
            delay = _failed(child, exc)
            if delay is None:
                raise
            await asyncio.sleep(delay)  # a cancel ends the wait
            if cancels.cancel_of(call) is not None:
                raise cancels.cancelled_error(call) from exc
            _restart(child)
        except BaseException as exc:  # cancelled, interrupted: no retry helps
            if cancels.cancel_of(call) is None:
                _end(child, "FAILED", _failure_message(exc))
            raise


def _entered(child: _ChildRun, task: asyncio.Task[Any] | None = None) -> cancels.Call:
    """Where a cancel of ``child`` finds its body: this thread, or the task awaiting it."""
    parent = child.context.parent_flow_run_id or ""
    loop = task.get_loop() if task is not None else None
    call = cancels.Call(
        child.id, child.context.name or "", parent, threading.get_ident(), task, loop
    )
    cancels.enter(call)
    return call


def _ended_cancelled(
    child: _ChildRun, call: cancels.Call, cancelled: cancels.Call
) -> FlowRunCancelled:
    """End ``child`` CANCELLED: the exception its call raises (its caller's, for a child of
    the run that was cancelled)."""
    if cancelled is call:
        message = "Cancelled by request"
    else:
        parent = cancels.parent_of(call)
        name = parent.name if parent is not None else cancelled.name
        message = f"Its parent flow run {name} ended (Cancelled) before it finished"
    with entered_subflow_run(child.context):
        logger.info("Flow run %s was cancelled", child.context.name)
    _end(child, "CANCELLED", message)
    return cancels.cancelled_error(cancelled)


async def _awaited(awaitable: Coroutine[Any, Any, Any], seconds: float | None) -> Any:
    if seconds is None:
        return await awaitable
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError as exc:
        raise TimeoutError(_timed_out(seconds)) from exc


def _timed_out(seconds: float) -> str:
    return f"Flow run timed out after {seconds:g} s"


def _limit(seconds: float | None) -> time_limits.Limit | None:
    return None if seconds is None else time_limits.Limit(seconds, _timed_out(seconds))


@contextlib.contextmanager
def _time_limit(limit: time_limits.Limit | None) -> Iterator[None]:
    """Raise the limit's ``TimeoutError`` in the body once it expires (``subflow_time_limits``)."""
    if limit is None:
        yield
        return
    with time_limits.running(limit):
        yield


def _send(event: ChildEvent) -> None:
    assert _process is not None, "subflows run only in a run's process"
    _process.reporter.send(event)


def _start(
    flow: Flow[Any, Any], arguments: dict[str, Any], task: asyncio.Task[Any] | None = None
) -> tuple[_ChildRun, cancels.Call]:
    """Tell the runner of a new child run, ready for a cancel of it before it hears of it."""
    parent = runtime.flow_run.id
    assert parent is not None and _process is not None
    listen, _process.listen = _process.listen, None
    if listen is not None:
        listen()
    parameters = _jsonable(arguments)
    started = time.time()
    context = FlowRunContext(
        id=str(uuid4()),
        name=generate_run_name(),
        run_count=1,
        parameters=parameters,
        scheduled_start_time=datetime.fromtimestamp(started, UTC),
        parent_flow_run_id=parent,
    )
    child = _ChildRun(flow, context)
    call = _entered(child, task)
    _send(
        ChildRunStarted(
            child.id,
            parent,
            context.name or "",
            flow.name,
            parameters,
            started,
            os.getpid(),
            flow.retries,
            flow.retry_delay_seconds,
            flow.timeout_seconds,
        )
    )
    return child, call


def _jsonable(arguments: dict[str, Any]) -> dict[str, Any]:
    """The arguments as a run shows its parameters (a value JSON cannot hold, by its type)."""
    value = to_jsonable_python(
        arguments, inf_nan_mode="null", fallback=lambda v: f"<{type(v).__qualname__}>"
    )
    return value if isinstance(value, dict) else {}


def _failed(child: _ChildRun, exc: BaseException) -> float | None:
    """Report a failed attempt: the delay before the next one, or None when it ended FAILED."""
    message = _failure_message(exc)
    with entered_subflow_run(child.context):  # the subflow's log shows where it raised
        logger.error("Flow run %s raised %s", child.context.name, type(exc).__name__, exc_info=exc)
    if child.attempts_left <= 0:
        _end(child, "FAILED", message)
        return None
    delay = child.flow.retry_delay_seconds
    note = f"Attempt {child.run_count} failed, retrying in {delay:g} s: {message}"
    now = time.time()
    flush_task_runs()  # the attempt's task runs are recorded before it ends
    _send(ChildRunRetrying(child.id, storable(note), now, now + delay))
    return delay


def _restart(child: _ChildRun) -> None:
    child.run_count += 1
    child.context = dataclasses.replace(child.context, run_count=child.run_count)
    _send(ChildRunRestarted(child.id, child.run_count, time.time()))


def _failure_message(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    return storable(f"Flow run raised {type(exc).__name__}: {exc}\n{text}")


def _end(child: _ChildRun, state_type: str, message: str | None) -> None:
    _end_output(child)
    flush_task_runs()  # its task runs are recorded before it ends
    _send(ChildRunEnded(child.id, state_type, message, time.time()))


def _end_output(child: _ChildRun) -> None:
    assert _process is not None
    for stream in _process.streams:
        stream.end(child.id)


def _completed(child: _ChildRun, result: Any) -> None:
    from headrace.process.child import encode_result  # the process's own module: loaded

    assert _process is not None
    encoded = encode_result(result, _process.result_storage, f"{child.id}.json")
    _end_output(child)
    flush_task_runs()
    ended = ChildRunEnded(
        child.id,
        "COMPLETED",
        encoded.message,
        time.time(),
        encoded.result,
        encoded.result_truncated,
        encoded.result_ref,
    )
    _send(ended)

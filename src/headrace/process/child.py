"""The child side of a flow run: isolate it, capture its output, load, validate, run, report.

A run's process never touches the database: it sends the events of
``headrace.process.protocol`` over a pipe and the runner, the one writer,
persists them. Everything the child writes to its stdout and stderr, and
every ``logging`` record, becomes a run log line. It dies with its fork
server, which kills it when the runner dies, so no run finishes unrecorded.
Kept light on imports: no web stack and no database driver.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import setproctitle
from pydantic_core import PydanticSerializationError, to_json, to_jsonable_python

from headrace.flow_runs import RESULT_SIZE_LIMIT
from headrace.jsonvalues import storable, storable_value
from headrace.process import subflow_cancels, subflows
from headrace.process.journal import append_entry
from headrace.process.protocol import (
    ChildEvent,
    ChildJob,
    Completed,
    Crashed,
    Failed,
    FinalEvent,
    Invalid,
    Log,
    Running,
)
from headrace.process.results import RESULT_STORAGE_VARIABLE, stored_result
from headrace.process.runner_messages import RunnerMessages
from headrace.process.taskruns import current_task_run, engine_for, flush_task_runs
from headrace.retries import should_retry
from headrace.runtime import FlowRunContext, enter_flow_run

if TYPE_CHECKING:
    from headrace.hooks import HookKind

PR_SET_PDEATHSIG = 1

TRACEPARENT_VARIABLE = "TRACEPARENT"
"""W3C trace context for programs and tracing libraries (OpenTelemetry's environment carrier)."""

fork_server_pid = 0
"""The fork server's pid, in it and in the runs it forks (0 elsewhere)."""

preloaded_modules: frozenset[str] = frozenset()
"""What the fork server had imported when it forked this run: a run should need nothing more."""


class Sender(Protocol):
    def send(self, obj: Any) -> None: ...

    def close(self) -> None: ...


class Reporter:
    """Sends events to the runner; safe to call from the output-capturing threads."""

    def __init__(self, connection: Sender) -> None:
        self._connection = connection
        self._lock = threading.Lock()
        self._main = threading.main_thread().ident

    def send(self, event: ChildEvent) -> None:
        """Send ``event`` whole or not at all (``frames.py``); a subflow's cancel waits for it.

        The sender writes a frame in one call that runs no Python code of this thread,
        so whatever is raised here lands before it (nothing sent) or after it. A cancel
        still waits for the end of the message, in every thread, so none is raised
        here: a sync subflow's in the main thread is a signal held back meanwhile,
        one in another thread is not set on it meanwhile (``subflow_cancels.sending``).
        """
        in_main = threading.get_ident() == self._main
        if in_main:
            subflow_cancels.hold()
        try:
            if not in_main:
                subflow_cancels.sending()
            # OSError: the runner is gone; there is nobody left to tell.
            with self._lock, contextlib.suppress(OSError):
                self._connection.send(event)
        finally:
            if in_main:
                subflow_cancels.release()
            else:
                subflow_cancels.sent()

    def log(self, level: int, message: str, flow_run_id: str | None = None) -> None:
        task_run = current_task_run.get()
        self.send(Log(level, storable(message), time.time(), task_run, flow_run_id))


class _PipeHandler(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter
        self.setFormatter(logging.Formatter("%(name)s - %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.log(record.levelno, self.format(record), subflows.logging_run_id())


def encode_result(result: Any, storage: str | None = None, name: str = "result.json") -> Completed:
    """The result as JSON, in pydantic's encoding, or a note of why it is not kept.

    Datetimes, decimals, UUIDs, enums, pydantic models and dataclasses become
    their JSON forms; NaN and infinities become null. A value pydantic cannot
    encode is not stored (null), and the state message says why: nothing is
    stored in a form posing as the value. One larger than ``RESULT_SIZE_LIMIT``
    is written whole to the result store ``storage`` as ``name``, if given.
    """
    try:
        value = to_jsonable_python(result, inf_nan_mode="null")
        size = _json_size(value)
    except Exception as exc:  # pydantic's errors, a model's own serializer raising, too deep
        why = (str(exc).splitlines() or [type(exc).__name__])[0]
        kind = type(result).__qualname__
        return Completed(None, storable(f"The result ({kind}) is not JSON-encodable: {why}"))
    if size > RESULT_SIZE_LIMIT:
        return stored_result(value, size, storage, name)
    return Completed(value)


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as UTF-8 JSON (an unpaired surrogate counts as one U+FFFD)."""
    try:
        return len(to_json(value))
    except PydanticSerializationError:  # an unpaired surrogate: no UTF-8 text holds one
        return len(to_json(storable_value(value)))


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so no run outlives its runner."""
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def prepare_fork_server() -> None:
    """Do once in the fork server what every run would otherwise do (and pay for) itself."""
    global fork_server_pid
    fork_server_pid = os.getpid()
    _prctl()
    logging.getLogger().setLevel(logging.INFO)


def _isolate(stop_asked: Callable[[], bool] | None) -> None:
    os.setsid()  # its own process group: cancel kills the run and everything it started
    _die_with_parent()
    parent = os.getppid()
    if parent == 1 or (fork_server_pid and parent != fork_server_pid):
        os._exit(1)  # the parent died before we asked to die with it
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    on_sigterm = signal.SIG_DFL if stop_asked is None else _heed_only_the_runner(stop_asked)
    signal.signal(signal.SIGTERM, on_sigterm)


IGNORED_SIGTERM = (
    b"headrace: ignored a SIGTERM its runner did not send; the runner decides when this run "
    b"stops (a SIGTERM to the runner drains it)\n"
)


def _heed_only_the_runner(stop_asked: Callable[[], bool]) -> Callable[[int, Any], None]:
    """A SIGTERM handler that ends the run only when its runner sent the signal.

    The runner writes a stop request on the run's events socket before it signals
    the run's group (cancel, timeout, shutdown), so ``stop_asked`` is true then (as
    it is once the runner is gone). A SIGTERM without it came from outside: a
    service manager that signals every process of the service (systemd's
    ``KillMode=control-group``) or ``kill -TERM`` of the runner and its runs.
    The runner got it too and drains, so the run keeps going. Processes the
    run forks keep the default; programs it executes get the default anyway.
    """
    run_pid = os.getpid()

    def on_sigterm(signum: int, frame: Any) -> None:
        if os.getpid() == run_pid and not stop_asked():
            with contextlib.suppress(OSError):
                os.write(2, IGNORED_SIGTERM)
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    return on_sigterm


def run_child(job: ChildJob, connection: Sender, stop_fd: int | None = None) -> None:
    """Entry point of a run's process (called in the forked child).

    File descriptors 1 and 2 are already pipes the runner reads line by line,
    so output from C code and subprocesses becomes run logs too; ``logging``
    records travel over the events socket with their levels. ``stop_fd`` (the
    events socket) carries what the runner tells the run: that it means to stop
    it (only then does a SIGTERM end it), or to cancel one of its subflows.
    """
    messages = None if stop_fd is None else RunnerMessages(stop_fd, subflows.cancel_requested)
    _isolate(None if messages is None else messages.stop_asked)
    if job.title:
        setproctitle.setproctitle(job.title)
    # Line by line, and printing text that is not valid UTF-8 never fails the flow.
    sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    reporter = Reporter(connection)
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(reporter)]
    if root.level != logging.INFO:  # setting it walks every logger: the fork server did
        root.setLevel(logging.INFO)
    flow: Any = None
    try:
        event, flow = _execute(job, reporter, messages)
        flush_task_runs()  # its task runs are stored before its end
        if job.journal_path is not None:  # first: the runner may die before it hears
            _journal(job, event, reporter)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    reporter.send(event)
    if flow is not None:
        _run_hooks(job, flow, event)


def _run_hooks(job: ChildJob, flow: Any, event: FinalEvent) -> None:
    """on_completion or on_failure, once the outcome is reported: a hook that hangs or
    dies cannot change it, and the runner records what the hooks print as the run's logs."""
    kind: HookKind
    match event:
        case Completed():
            kind = "on_completion"
        case Invalid():  # never retried: no attempt would validate
            kind = "on_failure"
        case Failed(retry=retry) if job.last_attempt or not retry:  # no retry follows
            kind = "on_failure"
        case _:
            return
    hooks = flow.hooks(kind)
    if not hooks:
        return
    from headrace.hooks import call_hooks
    from headrace.states import State, StateType

    state_type = StateType.COMPLETED if kind == "on_completion" else StateType.FAILED
    state = State(type=state_type, message=getattr(event, "message", None))
    try:
        call_hooks(kind, hooks, flow, _context(job), state)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()


def _journal(job: ChildJob, event: FinalEvent, reporter: Reporter) -> None:
    assert job.journal_path is not None
    try:
        append_entry(job.journal_path, job.journal_key, event)
    except (OSError, ValueError) as exc:
        # The pipe still carries it: only a kill of the runner now loses it.
        where = job.journal_path
        reporter.log(logging.WARNING, f"Could not record the run's outcome in {where}: {exc}")


def _execute(
    job: ChildJob, reporter: Reporter, messages: RunnerMessages | None = None
) -> tuple[FinalEvent, Any]:
    """Load, validate, run: returns the terminal event to report, and the flow (if loaded)."""
    from headrace.entrypoints import load_flow_from_entrypoint
    from headrace.exceptions import EntrypointError, ParameterValidationError

    _trace_environment(job.traceparent)
    enter_flow_run(_context(job))  # before the flow's module code runs, too
    subflows.install(reporter, job, None if messages is None else messages.start)
    try:
        flow = load_flow_from_entrypoint(job.entrypoint)
    except EntrypointError as exc:
        # A script's error already ends with the frames that say where it was raised.
        detail = "" if getattr(exc, "traceback_text", "") else f"\n{traceback.format_exc()}"
        message = f"Could not load the flow from {job.entrypoint!r}: {exc}{detail}"
        return Crashed(storable(message)), None
    try:
        parameters = flow.validate_parameters(job.parameters)
    except ParameterValidationError as exc:
        return Invalid(storable(f"Parameter validation failed: {exc}")), flow  # no retry helps
    if messages is not None and messages.stop_asked():
        # The runner died, or means to stop this run, while it loaded: the body never starts.
        os._exit(1)
    reporter.send(Running(time.time(), os.getpid()))
    engine_for(job, reporter.send, encode_result)
    if messages is not None and messages.stop_asked():
        # Again, as the very last thing: the runner may have died while the run said it
        # was running. Only a death in the microseconds from here to the body's first
        # line can still let a body start after its runner (and it is killed at once).
        os._exit(1)
    try:
        result = flow.fn(**parameters)
        if inspect.isawaitable(result):
            import asyncio  # here, not at the top: the fork server loads it only for async flows

            result = asyncio.run(_await(result))
    except BaseException as exc:  # any exception, SystemExit too, is a failure
        text = storable("".join(traceback.format_exception(exc)))
        reporter.log(logging.ERROR, text.rstrip("\n"))  # one line of the log, not one per frame
        retry, note = should_retry(getattr(flow, "retry_condition_fn", None), exc)
        note = f" ({note})" if note else ""
        message = f"Flow run raised {type(exc).__name__}: {exc}{note}\n{text}"
        return Failed(storable(message), retry), flow
    storage = job.environment.get(RESULT_STORAGE_VARIABLE)
    return encode_result(result, storage, f"{job.flow_run_id}.json"), flow


def _trace_environment(traceparent: str | None) -> None:
    """``TRACEPARENT``: the run's own trace, never one the runner was started in."""
    if traceparent:
        os.environ[TRACEPARENT_VARIABLE] = traceparent
    else:
        os.environ.pop(TRACEPARENT_VARIABLE, None)


def _context(job: ChildJob) -> FlowRunContext:
    return FlowRunContext(
        id=job.flow_run_id,
        name=job.flow_run_name,
        run_count=job.run_count,
        parameters=dict(job.parameters),
        deployment_id=job.deployment_id,
        scheduled_start_time=job.scheduled_start_time,
        parent_flow_run_id=job.parent_flow_run_id,
    )


async def _await(awaitable: Any) -> Any:
    return await awaitable

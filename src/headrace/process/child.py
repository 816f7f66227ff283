"""The child side of a flow run: isolate it, capture its output, load, validate, run, report.

A run's process never touches the database: it sends the events of
``headrace.process.protocol`` over a pipe and the runner, the one writer,
persists them. Everything the child writes to its stdout and stderr, and
every ``logging`` record, becomes a run log line. It dies with its fork
server, which dies with its runner, so no run finishes unrecorded.
Kept light on imports: no web stack and no database driver.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from headrace.jsonvalues import storable
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

RESULT_SIZE_LIMIT = 64 * 1024
"""Characters of a result kept in the store; larger results are kept as a truncated repr."""

PR_SET_PDEATHSIG = 1

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

    def send(self, event: ChildEvent) -> None:
        # OSError: the runner is gone; there is nobody left to tell.
        with self._lock, contextlib.suppress(OSError):
            self._connection.send(event)

    def log(self, level: int, message: str) -> None:
        self.send(Log(level, storable(message), time.time()))


class _PipeHandler(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter
        self.setFormatter(logging.Formatter("%(name)s - %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.log(record.levelno, self.format(record))


def encode_result(result: Any) -> Any:
    """The result as JSON when it serialises and fits, else its (truncated) repr.

    Every store keeps it the same way: NaN and infinities become null, as in
    every response, and unpaired surrogates (which no UTF-8 text can hold)
    become U+FFFD.
    """
    try:
        text = json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return _truncate(storable(repr(result)))
    if len(text) > RESULT_SIZE_LIMIT:
        return _truncate(storable(text))
    clean = storable(text)
    if clean is not text or "NaN" in text or "Infinity" in text:
        return json.loads(clean, parse_constant=lambda _: None)
    return result


def _truncate(text: str) -> str:
    if len(text) <= RESULT_SIZE_LIMIT:
        return text
    return text[:RESULT_SIZE_LIMIT] + f"... [truncated {len(text) - RESULT_SIZE_LIMIT} chars]"


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
    _prctl()
    logging.getLogger().setLevel(logging.INFO)


def _isolate() -> None:
    os.setsid()  # its own process group: cancel kills the run and everything it started
    _die_with_parent()
    if os.getppid() == 1:  # the parent died before we asked to die with it
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_child(job: ChildJob, connection: Sender) -> None:
    """Entry point of a run's process (called in the forked child).

    File descriptors 1 and 2 are already pipes the runner reads line by line,
    so output from C code and subprocesses becomes run logs too; ``logging``
    records travel over the events pipe with their levels.
    """
    _isolate()
    # Line by line, and printing text that is not valid UTF-8 never fails the flow.
    sys.stdout = open(1, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")  # noqa: SIM115
    reporter = Reporter(connection)
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(reporter)]
    if root.level != logging.INFO:  # setting it walks every logger: the fork server did
        root.setLevel(logging.INFO)
    try:
        event = _execute(job, reporter)
        if job.journal_path is not None:  # first: the runner may die before it hears
            _journal(job, event, reporter)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    reporter.send(event)


def _journal(job: ChildJob, event: FinalEvent, reporter: Reporter) -> None:
    assert job.journal_path is not None
    try:
        append_entry(job.journal_path, job.journal_key, event)
    except OSError as exc:  # the pipe still carries it: only a kill of the runner now loses it
        where = job.journal_path
        reporter.log(logging.WARNING, f"Could not record the run's outcome in {where}: {exc}")


def _execute(job: ChildJob, reporter: Reporter) -> FinalEvent:
    """Load, validate, run: returns the terminal event to report."""
    from headrace.entrypoints import load_flow_from_entrypoint
    from headrace.exceptions import EntrypointError, ParameterValidationError

    try:
        flow = load_flow_from_entrypoint(job.entrypoint)
    except EntrypointError as exc:
        detail = getattr(exc, "traceback_text", "") or traceback.format_exc()
        message = f"Could not load the flow from {job.entrypoint!r}: {exc}\n{detail}"
        return Crashed(storable(message))
    try:
        parameters = flow.validate_parameters(job.parameters)
    except ParameterValidationError as exc:
        return Invalid(storable(f"Parameter validation failed: {exc}"))  # no retry helps
    reporter.send(Running(time.time(), os.getpid()))
    try:
        result = flow.fn(**parameters)
        if inspect.isawaitable(result):
            import asyncio  # here, not at the top: the fork server loads it only for async flows

            result = asyncio.run(_await(result))
    except BaseException as exc:  # any exception, SystemExit too, is a failure
        text = storable("".join(traceback.format_exception(exc)))
        print(text, file=sys.stderr, end="")
        return Failed(storable(f"Flow run raised {type(exc).__name__}: {exc}\n{text}"))
    return Completed(encode_result(result))


async def _await(awaitable: Any) -> Any:
    return await awaitable

"""The child side of a flow run: load the flow, run it, report back to the runner.

A run's process never touches the database: it sends events over a pipe and
the runner, the one writer, persists them. Everything the child writes to its
stdout and stderr, and every ``logging`` record, becomes a run log line.
Kept light on imports: no web stack and no database driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import inspect
import json
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Protocol

RESULT_SIZE_LIMIT = 64 * 1024
"""Characters of a result kept in the store; larger results are kept as a truncated repr."""

PR_SET_PDEATHSIG = 1


class Sender(Protocol):
    def send(self, obj: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ChildJob:
    """What a child needs to run one attempt of a flow run."""

    flow_run_id: str
    flow_run_name: str
    entrypoint: str
    parameters: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Sends events to the runner; safe to call from the output-capturing threads."""

    def __init__(self, connection: Sender) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, *event: Any) -> None:
        # OSError: the runner is gone; there is nobody left to tell.
        with self._lock, contextlib.suppress(OSError):
            self._connection.send(event)

    def log(self, level: int, message: str) -> None:
        self.send("log", level, message, time.time())


class _PipeHandler(logging.Handler):
    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter
        self.setFormatter(logging.Formatter("%(name)s - %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.log(record.levelno, self.format(record))


class OutputCapture:
    """Redirects file descriptors 1 and 2 into log lines, so C code and subprocesses count too."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for fd, level in ((1, logging.INFO), (2, logging.ERROR)):
            read_fd, write_fd = os.pipe()
            os.dup2(write_fd, fd)
            os.close(write_fd)
            thread = threading.Thread(target=self._pump, args=(read_fd, level), daemon=True)
            thread.start()
            self._threads.append(thread)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115

    def _pump(self, read_fd: int, level: int) -> None:
        with open(read_fd, "rb") as stream:
            for raw in stream:
                self.reporter.log(level, raw.decode(errors="replace").rstrip("\n"))

    def stop(self) -> None:
        """Flush and close the redirected descriptors, then wait for the last lines."""
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.close(devnull)
        for thread in self._threads:
            thread.join(timeout=5)


def encode_result(result: Any) -> Any:
    """The result as JSON when it serialises and fits, else its (truncated) repr."""
    try:
        text = json.dumps(result)
    except (TypeError, ValueError, RecursionError):
        return _truncate(repr(result))
    return result if len(text) <= RESULT_SIZE_LIMIT else _truncate(text)


def _truncate(text: str) -> str:
    if len(text) <= RESULT_SIZE_LIMIT:
        return text
    return text[:RESULT_SIZE_LIMIT] + f"... [truncated {len(text) - RESULT_SIZE_LIMIT} chars]"


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, so no run outlives its runner."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def _die_with_runner(connection: Sender) -> None:
    """Kill this run's process group the moment the runner's end of the events pipe closes.

    The runner, not the fork server, is the parent that matters: if it dies
    (even by SIGKILL), a run that kept going would finish unrecorded. Polling a
    pipe's write end reports POLLERR once its reader is gone; no timers needed.
    """
    fileno = getattr(connection, "fileno", None)
    if fileno is None:
        return
    fd = fileno()

    def watch() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLERR | select.POLLHUP)
        while True:
            for _, mask in poller.poll():
                if mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL):
                    os.killpg(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="headrace-runner-watch", daemon=True).start()


def _isolate() -> None:
    os.setsid()  # its own process group: cancel kills the run and everything it started
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_child(job: ChildJob, connection: Sender) -> None:
    """Entry point of a run's process (called in the forked child)."""
    _isolate()
    _die_with_runner(connection)
    reporter = Reporter(connection)
    capture = OutputCapture(reporter)
    capture.start()
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(reporter)]
    root.setLevel(logging.INFO)
    try:
        event = _execute(job, reporter)
    finally:
        capture.stop()
    reporter.send(*event)
    # The connection stays open until exit: closing it would trip the runner watch.


def _execute(job: ChildJob, reporter: Reporter) -> tuple[Any, ...]:
    """Load, validate, run: returns the terminal event to report."""
    from headrace.entrypoints import load_flow_from_entrypoint
    from headrace.exceptions import EntrypointError, ParameterValidationError

    try:
        flow = load_flow_from_entrypoint(job.entrypoint)
    except EntrypointError as exc:
        detail = getattr(exc, "traceback_text", "") or traceback.format_exc()
        return ("crashed", f"Could not load the flow from {job.entrypoint!r}: {exc}\n{detail}")
    try:
        parameters = flow.validate_parameters(job.parameters)
    except ParameterValidationError as exc:
        return ("failed", f"Parameter validation failed: {exc}")
    reporter.send("running", time.time(), os.getpid())
    try:
        result = flow.fn(**parameters)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
    except BaseException as exc:  # any exception, SystemExit too, is a failure
        text = "".join(traceback.format_exception(exc))
        print(text, file=sys.stderr, end="")
        return ("failed", f"Flow run raised {type(exc).__name__}: {exc}\n{text}")
    return ("completed", encode_result(result))


async def _await(awaitable: Any) -> Any:
    return await awaitable

"""Starting and stopping a run's process: the strategy, and the handle it returns.

The default starter asks a warm fork server (``headrace.process.forkserver``) to fork
each run, so starting a run costs a fork, not an interpreter start and its
imports. The exchange is asynchronous: the runner's event loop never blocks on
it. Every run still gets a process, and a process group, of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Protocol

from headrace.process.protocol import (
    EXITED,
    PRELOAD_VARIABLE,
    READY,
    REPLY,
    REQUEST,
    STARTED,
    SYS_PATH_VARIABLE,
    ChildJob,
)

logger = logging.getLogger(__name__)

DEFAULT_KILL_GRACE_SECONDS = 5.0
FORKSERVER_START_TIMEOUT_SECONDS = 60.0


class ProcessLost(RuntimeError):
    """The fork server died, and the run's process with it; its exit status is unknown."""


class ChildProcess:
    """One running flow-run process: its events pipe, its exit, and how to kill it."""

    def __init__(
        self,
        pid: int,
        events: int,
        exited: asyncio.Future[int],
        output: tuple[int, int] = (-1, -1),
    ) -> None:
        self.pid = pid
        self.events = events
        """Read end of the pipe the run's process sends its events over."""
        self.output = output
        """Read ends of the pipes that are the run's stdout and stderr (-1: none)."""
        self._exited = exited

    async def wait(self) -> int:
        """The exit code once the process has ended: negative for a signal, as in subprocess."""
        return await asyncio.shield(self._exited)

    @property
    def exitcode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def signal_group(self, signum: int) -> None:
        """Signal the run's whole process group (it called setsid, so its pgid is its pid)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def ask_to_stop(self) -> None:
        """Tell the run's process that the SIGTERM that follows is its runner's.

        A run ignores a SIGTERM that comes without this (see ``child.py``). Only
        while it runs: once it has exited, the events fd may be closed and its
        number reused.
        """
        if self.exitcode is None:
            with contextlib.suppress(OSError):
                os.write(self.events, b"\0")

    async def kill(self, grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS) -> int:
        """SIGTERM the group, then SIGKILL it if the process outlives the grace period."""
        if self.exitcode is None:
            self.ask_to_stop()
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), timeout=grace_seconds)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
        code = await self.wait()
        self.signal_group(signal.SIGKILL)  # stragglers the run left in its group
        return code


class ProcessStarter(Protocol):
    """How a run's process is started."""

    async def start(self, job: ChildJob) -> ChildProcess: ...

    async def close(self) -> None: ...


class ForkServerStarter:
    """Forks runs from a warm fork server process that has the served flows imported."""

    def __init__(self, entrypoints: Sequence[str] = ()) -> None:
        self._entrypoints = list(entrypoints)
        self._process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._started: dict[int, asyncio.Future[int]] = {}
        self._exited: dict[int, asyncio.Future[int]] = {}
        self._buffer = b""
        self._send_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()

    async def open(self) -> None:
        """Start the fork server and wait until it has preloaded everything."""
        async with self._open_lock:
            if self._sock is None:  # runs that start together share the one they waited for
                await self._open()

    async def _open(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {
            **os.environ,
            # JSON, not a separator: entrypoints ("path.py:fn") and paths may hold any of them.
            PRELOAD_VARIABLE: json.dumps(self._entrypoints),
            SYS_PATH_VARIABLE: json.dumps(sys.path),
        }
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "headrace.process.forkserver",
            str(theirs.fileno()),
            pass_fds=[theirs.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ours.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            ready = await asyncio.wait_for(
                loop.sock_recv(ours, 1), FORKSERVER_START_TIMEOUT_SECONDS
            )
        except BaseException:
            ours.close()
            raise
        if ready != READY:
            ours.close()
            raise RuntimeError("The fork server failed to start; see its output above")
        self._buffer = b""
        self._sock = ours
        loop.add_reader(ours.fileno(), self._on_replies)

    async def start(self, job: ChildJob) -> ChildProcess:
        if self._sock is None:
            await self.open()
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        read_fd, write_fd = ours.detach(), theirs.detach()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        request_id = next(self._ids)
        started: asyncio.Future[int] = loop.create_future()
        exited: asyncio.Future[int] = loop.create_future()
        self._started[request_id] = started
        self._exited[request_id] = exited
        payload = pickle.dumps(job)
        try:
            try:
                async with self._send_lock:
                    header = REQUEST.pack(request_id, len(payload))
                    socket.send_fds(sock, [header], [write_fd, out_w, err_w])
                    await loop.sock_sendall(sock, payload)
            finally:
                for fd in (write_fd, out_w, err_w):
                    os.close(fd)
            pid = await started
        except (OSError, ProcessLost) as exc:
            for fd in (read_fd, out_r, err_r):
                os.close(fd)
            self._forget(request_id)
            if isinstance(exc, ConnectionError):  # its end closed: it died before reading it
                raise ProcessLost("The fork server exited") from exc
            raise
        return ChildProcess(pid, read_fd, exited, output=(out_r, err_r))

    def _forget(self, request_id: int) -> None:
        self._started.pop(request_id, None)
        self._exited.pop(request_id, None)

    def _on_replies(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._on_server_lost()
            return
        self._buffer += data
        while len(self._buffer) >= REPLY.size:
            request_id, kind, value = REPLY.unpack_from(self._buffer)
            self._buffer = self._buffer[REPLY.size :]
            table = self._started if kind == STARTED else self._exited
            future = table.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(value)
            if kind == EXITED:
                self._started.pop(request_id, None)

    def _on_server_lost(self) -> None:
        """The fork server died: its runs are beyond reach; fail what waits on it."""
        logger.error("The fork server exited; starting a new one for the next run")
        self._close_socket()
        self._buffer = b""  # half a reply from the dead server must not prefix the next one's
        for table in (self._started, self._exited):
            for future in table.values():
                if not future.done():
                    future.set_exception(ProcessLost("The fork server exited"))
            table.clear()

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def close(self) -> None:
        self._close_socket()
        process = self._process
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        self._process = None

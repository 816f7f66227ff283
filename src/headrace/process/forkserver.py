"""The fork server: a warm interpreter that forks one process per flow run.

Started by the runner as ``python -m headrace.process.forkserver FD``. It imports the
child side, pydantic and the served flows once; each run is then a ``fork()``
(about a millisecond) instead of a new interpreter (far more, before the
user's imports). It takes requests and sends replies over the Unix socket ``FD``
in the wire format of ``headrace.process.protocol``.

When the runner goes away the socket closes: the server SIGKILLs the process
group of every run it started, then exits, and forks nothing for a runner that
is gone (it checks its parent before each fork). Its runs also die with it
(``PR_SET_PDEATHSIG``), should the server itself be killed.
Keeps its imports light: no web stack, no database driver.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import pickle
import selectors
import signal
import socket
import sys
from typing import NoReturn

import setproctitle

from headrace.process.protocol import (
    EXITED,
    FDS_PER_RUN,
    PRELOAD_VARIABLE,
    READY,
    REPLY,
    REQUEST,
    RUN_CPUS_VARIABLE,
    STARTED,
    SYS_PATH_VARIABLE,
    ChildJob,
)

RUN_NICENESS = 5
FORK_SERVER_TITLE = "headrace forkserver"
"""What ``ps`` shows for the fork server."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_request(sock: socket.socket) -> tuple[int, ChildJob, list[int]]:
    header, fds, _flags, _address = socket.recv_fds(sock, REQUEST.size, FDS_PER_RUN)
    if not header:
        raise EOFError
    if len(header) < REQUEST.size:
        header += _recv_exact(sock, REQUEST.size - len(header))
    request_id, length = REQUEST.unpack(header)
    job: ChildJob = pickle.loads(_recv_exact(sock, length))
    if len(fds) != FDS_PER_RUN:
        raise RuntimeError(f"a fork request must carry {FDS_PER_RUN} file descriptors")
    return request_id, job, fds


def _run_in_child(sock: socket.socket, job: ChildJob, fds: list[int]) -> None:
    """In the forked child: forget the server's state, wire up the pipes, run the flow, exit."""
    code = 1
    try:
        sock.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        events_fd, stdout_fd, stderr_fd = fds
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        os.close(stdout_fd)
        os.close(stderr_fd)
        from headrace.process.child import run_child
        from headrace.process.frames import FrameSender

        run_child(job, FrameSender(events_fd), stop_fd=events_fd)
        code = 0
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _exit_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


class ForkServer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.runner_pid = os.getppid()
        self.pids: dict[int, int] = {}
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self.wakeup_r, selectors.EVENT_READ)
        self.sock.sendall(READY)
        while True:
            for key, _ in selector.select():
                if key.fileobj is self.sock:
                    self._fork_one()
                else:
                    os.read(self.wakeup_r, 4096)
                    self._reap()

    def _fork_one(self) -> None:
        try:
            request_id, job, fds = _read_request(self.sock)
        except (EOFError, ConnectionError):
            self.runner_gone()
        if os.getppid() != self.runner_pid:  # it sent this, then died: start nothing for it
            self.runner_gone()
        pid = os.fork()
        if pid == 0:
            _run_in_child(self.sock, job, fds)
        for fd in fds:
            os.close(fd)
        self.pids[pid] = request_id
        self._reply(request_id, STARTED, pid)

    def _reply(self, request_id: int, kind: int, value: int) -> None:
        try:
            self.sock.sendall(REPLY.pack(request_id, kind, value))
        except OSError:  # the runner's end is closed: it died
            self.runner_gone()

    def runner_gone(self) -> NoReturn:
        """Kill every run still going, and everything it started, then exit at once.

        Nobody is left to record how they end. A run not yet in a group of its
        own (it calls ``setsid`` first thing) is killed by its pid. No interpreter
        shutdown: its clean-up is slow, and runs would go on meanwhile.
        """
        for pid in self.pids:  # unreaped: neither pid nor group id can be reused yet
            for kill in (os.kill, os.killpg):
                with contextlib.suppress(OSError):
                    kill(pid, signal.SIGKILL)
        os._exit(0)

    def _reap(self) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            request_id = self.pids.pop(pid, None)
            if request_id is not None:
                self._reply(request_id, EXITED, _exit_status(status))


def release_cpus() -> None:
    """Take back every CPU the serving process may use: runs are not held to its one CPU."""
    cpus = os.environ.pop(RUN_CPUS_VARIABLE, None)
    if cpus:
        os.sched_setaffinity(0, json.loads(cpus))


def _preload() -> None:
    import headrace.entrypoints
    import headrace.flows
    import headrace.parameters
    import headrace.process.child
    import headrace.process.frames

    setproctitle.setproctitle(FORK_SERVER_TITLE)
    paths = os.environ.get(SYS_PATH_VARIABLE)
    if paths:
        sys.path[:] = json.loads(paths)
    for entrypoint in json.loads(os.environ.get(PRELOAD_VARIABLE) or "[]"):
        with contextlib.suppress(Exception):
            flow = headrace.entrypoints.load_flow_from_entrypoint(entrypoint)
            flow.parameters  # noqa: B018 - builds the validation model once, for every run
            if flow.is_async:
                import asyncio  # noqa: F401 - 11 MB a run of a sync flow does not need


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    sock.setblocking(True)
    # Ctrl-C, and a SIGTERM to the whole group (systemd, docker stop, timeout), are the
    # runner's to handle: it drains, then closes the socket, and that ends this server.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Runs (which inherit this) yield the CPU to their runner: accepting, claiming and
    # recording work stays quick however busy the flows keep the machine.
    os.nice(RUN_NICENESS)
    release_cpus()
    _preload()
    import headrace.process.child

    headrace.process.child.prepare_fork_server()
    headrace.process.child.preloaded_modules = frozenset(sys.modules)
    # Move everything imported so far out of the collector's sight: a run's garbage
    # collections then never touch (and so never copy) the pages it shares with us.
    gc.freeze()
    ForkServer(sock).serve()


if __name__ == "__main__":
    main()

"""What the runner tells a run's process over the run's events socket, heard by a small thread.

The runner writes ``STOP_REQUEST`` before it signals the run's group (cancel,
timeout, shutdown), and ``CANCEL_CHILD`` with a subflow run's id when only that
child is cancelled (``protocol.py``). The thread, started with the run's first
subflow, reads both as they come, so a child's cancel reaches its body while the
run goes on; whether the runner asked the run to stop is answered from what the
thread read and what is still unread (the end of the socket, the runner gone,
counts as a stop).
"""

from __future__ import annotations

import os
import select
import socket
import threading
from collections.abc import Callable
from uuid import UUID

from headrace.process.protocol import CANCEL_CHILD, CANCEL_CHILD_SIZE

READ_CHUNK = 4096


class RunnerMessages:
    """Reads the runner's messages on a run's events socket ``fd`` (the process's own copy)."""

    def __init__(self, fd: int, on_cancel_child: Callable[[str], None]) -> None:
        self._sock = socket.socket(fileno=os.dup(fd))  # the run's sends keep ``fd``
        self._on_cancel_child = on_cancel_child
        self._lock = threading.RLock()  # a SIGTERM handler may ask while this thread reads
        self._stop = False
        self._buffer = b""
        self.thread = threading.Thread(
            target=self._listen, name="headrace-runner-messages", daemon=True
        )
        """Ends when the runner is gone."""

    def start(self) -> None:
        self.thread.start()

    def stop_asked(self) -> bool:
        """Whether the runner asked this run to stop, or is gone."""
        with self._lock:
            if self._stop:
                return True
            try:
                unread = self._sock.recv(READ_CHUNK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not unread:
                return True
            return _parsed(self._buffer + unread)[0]

    def _listen(self) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        while True:
            poller.poll()
            with self._lock:
                try:
                    data = self._sock.recv(READ_CHUNK, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    self._stop = True  # the runner is gone
                    self._sock.close()
                    return
                stop, children, self._buffer = _parsed(self._buffer + data)
                self._stop = self._stop or stop
            for child_id in children:
                self._on_cancel_child(child_id)


def _parsed(data: bytes) -> tuple[bool, list[str], bytes]:
    """Whether ``data`` holds a stop request, the children it asks to cancel, and what is
    left of it: a cancel cut short, to complete with the next read."""
    stop = False
    children: list[str] = []
    at = 0
    while at < len(data):
        if data[at : at + 1] != CANCEL_CHILD:
            stop = True  # STOP_REQUEST (any other byte, from an older runner, means the same)
            at += 1
        elif len(data) - at < CANCEL_CHILD_SIZE:
            break
        else:
            children.append(str(UUID(bytes=data[at + 1 : at + CANCEL_CHILD_SIZE])))
            at += CANCEL_CHILD_SIZE
    return stop, children, data[at:]

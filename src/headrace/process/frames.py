"""How a run's process writes one event to its runner: the whole frame, or nothing.

The frame is the one ``multiprocessing.connection.Connection.send`` writes, which
the runner's ``pipes.EventReader`` parses: a 4-byte big-endian length (or -1 and an
8-byte length, for a payload over 2 GiB), then the pickled event. ``Connection.send``
writes it from Python, in two writes for a payload over 16 KiB and in a Python loop
on a partial write; an exception raised between two of them (a subflow's cancel, a
signal handler) would leave half a frame on the socket, and the runner could read
nothing more of the run: its logs, its result, its end. Here the frame is built
first and handed to one ``socket.sendall``, which loops in C:

- no Python code of the sending thread runs inside it, so an exception set on the
  thread (``PyThreadState_SetAsyncExc``) is raised before it (nothing sent) or
  after it (all sent);
- in the main thread, its loop runs signal handlers when a write is interrupted and
  stops if one raises. A frame of at most ``ONE_WRITE`` bytes is one kernel write on
  Linux (one buffer of an AF_UNIX stream socket: interrupted, it sent nothing), so a
  handler raising there sends nothing. A larger one may go out in parts: every signal
  is blocked while it is sent (``send_whole``), and handled right after.
"""

from __future__ import annotations

import importlib
import pickle
import signal
import socket
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

_SIZE = struct.Struct("!i")
_LONG_SIZE = struct.Struct("!Q")
_LONG = _SIZE.pack(-1)
_ALL_SIGNALS = frozenset(int(each) for each in signal.valid_signals())
_sigmask: Callable[[int, Iterable[int]], set[int]] = importlib.import_module(
    "_signal"
).pthread_sigmask
"""``signal.pthread_sigmask`` without its wrapper, which turns every signal of the mask it
returns into an enum member: that cost more than the rest of sending a 100 KB frame."""

ONE_WRITE = 16384 if sys.platform == "linux" else 0
"""Frames up to this size leave in one write or not at all: Linux puts up to 32 KiB of a
send on an AF_UNIX stream socket in one buffer, which it waits for whole."""


def frame(obj: Any) -> bytes:
    """``obj`` pickled, behind its length: the bytes the runner reads as one event."""
    payload = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
    size = len(payload)
    if size > 0x7FFFFFFF:
        return _LONG + _LONG_SIZE.pack(size) + payload
    return _SIZE.pack(size) + payload


class FrameSender:
    """Sends events over a run's events socket ``fd`` (it owns the fd): each one whole or not
    at all, whatever is raised in the sending thread."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._main = threading.main_thread().ident

    def send(self, obj: Any) -> None:
        data = frame(obj)
        if len(data) > ONE_WRITE and threading.get_ident() == self._main:
            send_whole(self._sock, data)
        else:
            self._sock.sendall(data)  # signal handlers run in the main thread only

    def close(self) -> None:
        self._sock.close()


def send_whole(sock: socket.socket, data: bytes) -> None:
    """``sock.sendall(data)`` in the main thread with every signal blocked meanwhile.

    ``pthread_sigmask`` runs the handlers of signals already pending when it returns, and
    one may raise: reading the mask changes nothing, so a raise there sends nothing; one
    raised by the blocking call (the mask is set then) is held until the frame is out.
    """
    previous = _sigmask(signal.SIG_BLOCK, ())
    held: BaseException | None = None
    try:
        try:
            _sigmask(signal.SIG_BLOCK, _ALL_SIGNALS)
        except BaseException as exc:  # a handler raised; every signal is blocked now
            held = exc
        sock.sendall(data)
    finally:
        _sigmask(signal.SIG_SETMASK, previous)  # handlers run, and may raise, here
    if held is not None:
        raise held

"""A run's events pipe, read on the event loop without ever blocking it.

The run's process sends each event with ``multiprocessing.connection.Connection.send``:
a 4-byte big-endian length (or -1 and an 8-byte length), then the pickled event.
``Connection.recv`` cannot read that from a non-blocking pipe (uvloop makes every
fd it watches non-blocking): a message over 16 KiB arrives in two writes, and a
read between them fails half way, losing the event. So the runner keeps what has
arrived in a buffer and unpickles a message once all of it is there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any

from headrace.process.output import read_ready

logger = logging.getLogger(__name__)

_SIZE = struct.Struct("!i")
_LONG_SIZE = struct.Struct("!Q")


class EventReader:
    """Reads one run's events pipe as it becomes readable, handing each event on in order."""

    def __init__(self, fd: int, on_event: Callable[[tuple[Any, ...]], None]) -> None:
        self._fd = fd
        self._on_event = on_event
        self._buffer = bytearray()
        self.closed = False
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self.drain)

    def drain(self) -> None:
        """Take every complete event that has arrived; stop at the end of the pipe."""
        while not self.closed:
            data = read_ready(self._fd)
            if data is None:
                return
            self._buffer += data
            self._hand_on()
            if not data:
                self.close()

    def _hand_on(self) -> None:
        while not self.closed:
            try:
                event = self._next_event()
            except Exception:  # not what a run's process sends: stop listening to it
                logger.exception("Unreadable event from a flow run's process; ignoring the rest")
                self.close()
                return
            if event is None:
                return
            self._on_event(event)

    def _next_event(self) -> tuple[Any, ...] | None:
        """The first event in the buffer once all of it has arrived, else None."""
        buffer = self._buffer
        if len(buffer) < _SIZE.size:
            return None
        (size,) = _SIZE.unpack_from(buffer)
        start = _SIZE.size
        if size == -1:
            if len(buffer) < start + _LONG_SIZE.size:
                return None
            (size,) = _LONG_SIZE.unpack_from(buffer, start)
            start += _LONG_SIZE.size
        end = start + size
        if len(buffer) < end:
            return None
        event: tuple[Any, ...] = pickle.loads(buffer[start:end])
        del buffer[:end]
        return event

    def close(self) -> None:
        """Stop reading; a message cut short by the process's end is dropped."""
        if self.closed:
            return
        self.closed = True
        asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._buffer.clear()

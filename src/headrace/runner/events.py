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
import os
import pickle
import struct
from collections.abc import Callable
from typing import Any

from headrace.runner.output import read_ready

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
        if self.closed:
            return
        while True:
            data = read_ready(self._fd)
            if data is None:
                return
            if not data:
                self.close()
                return
            self._buffer += data
            for event in self._complete_events():
                self._on_event(event)

    def _complete_events(self) -> list[tuple[Any, ...]]:
        events = []
        buffer = self._buffer
        while len(buffer) >= _SIZE.size:
            (size,) = _SIZE.unpack_from(buffer)
            start = _SIZE.size
            if size == -1:
                if len(buffer) < start + _LONG_SIZE.size:
                    break
                (size,) = _LONG_SIZE.unpack_from(buffer, start)
                start += _LONG_SIZE.size
            end = start + size
            if len(buffer) < end:
                break
            events.append(pickle.loads(buffer[start:end]))
            del buffer[:end]
        return events

    def close(self) -> None:
        """Stop reading; a message cut short by the process's end is dropped."""
        if self.closed:
            return
        self.closed = True
        asyncio.get_running_loop().remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._buffer.clear()

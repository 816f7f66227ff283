"""The two pipes a run's process writes to the runner, read on the event loop without blocking.

Events: the run's process sends each event as ``frames.frame`` builds it, in
``multiprocessing.connection``'s format: a 4-byte big-endian length (or -1 and an
8-byte length), then the pickled event. ``Connection.recv`` cannot read that from a
non-blocking pipe (uvloop makes every fd it watches non-blocking): a large message
arrives in several reads, and a read between them fails half way, losing the event.
So the runner keeps what has arrived in a buffer and unpickles a message once all of
it is there.

Output: the run's stdout and stderr, read line by line as they arrive. A line longer
than the line limit is handed on once: its head, and how many characters were cut
(``cut_line`` writes both as one line). The reader keeps only what the head needs, so a
line of any length costs bounded memory.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import os
import pickle
import struct
from collections.abc import Callable

from headrace.process.protocol import ChildEvent
from headrace.settings import LOG_LINE_LIMIT_CHARS

logger = logging.getLogger(__name__)

READ_CHUNK = 65536

_SIZE = struct.Struct("!i")
_LONG_SIZE = struct.Struct("!Q")


def cut_line(text: str, limit: int, more: int = 0) -> str:
    """``text`` cut to ``limit`` characters, with a marker counting what was cut (and ``more``)."""
    cut = max(len(text) - limit, 0) + more
    if not cut:
        return text
    return f"{text[:limit]}… [cut: {cut:,} more characters]"


def read_ready(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now: None if nothing yet, b"" at its end (or on an error)."""
    try:
        return os.read(fd, READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class EventReader:
    """Reads one run's events pipe as it becomes readable, handing each event on in order."""

    def __init__(self, fd: int, on_event: Callable[[ChildEvent], None]) -> None:
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
                self._stop_reading()  # the fd stays open: its process may not be reaped yet

    def _hand_on(self) -> None:
        while not self.closed:
            try:
                event = self._next_event()
            except Exception:  # not what a run's process sends: stop listening to it
                logger.exception("Unreadable event from a flow run's process; ignoring the rest")
                self._stop_reading()
                # Read on, unheard: a process writing into a full socket would hang.
                asyncio.get_running_loop().add_reader(self._fd, self._discard)
                return
            if event is None:
                return
            self._on_event(event)

    def _next_event(self) -> ChildEvent | None:
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
        event: ChildEvent = pickle.loads(buffer[start:end])
        del buffer[:end]
        return event

    def _discard(self) -> None:
        if read_ready(self._fd) == b"":
            asyncio.get_running_loop().remove_reader(self._fd)

    def _stop_reading(self) -> None:
        self.closed = True
        asyncio.get_running_loop().remove_reader(self._fd)
        self._buffer.clear()

    def close(self) -> None:
        """Stop reading and close the fd; a message cut short by the process's end is dropped."""
        if self._fd < 0:
            return
        self._stop_reading()
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1


class OutputReader:
    """Reads one non-blocking output pipe on the event loop, handing each complete line on.

    A line over ``max_chars`` is handed on once: its first ``max_chars`` characters and
    the count of the rest (``cut_line`` writes them as one line); only the count is kept.
    """

    def __init__(
        self,
        fd: int,
        level: int,
        on_line: Callable[[int, str, int], None],
        max_chars: int = LOG_LINE_LIMIT_CHARS,
    ) -> None:
        self._fd = fd
        self._level = level
        self._on_line = on_line
        self._max_chars = max_chars
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._head: list[str] = []
        self._head_chars = 0
        self._cut_chars = 0
        self._started = False
        self._closed = False
        asyncio.get_running_loop().add_reader(fd, self._read)

    def _read(self) -> None:
        data = read_ready(self._fd)
        if data is None:
            return
        if not data:
            self.close()
            return
        self._take(data)

    def _take(self, data: bytes) -> None:
        # A newline byte is never inside a UTF-8 character: lines split safely as bytes.
        *ends, rest = data.split(b"\n")
        for end in ends:
            self._extend(self._decoder.decode(end.removesuffix(b"\r")))
            self._emit()
        self._extend(self._decoder.decode(rest))
        self._started = self._started or bool(rest)

    def _extend(self, text: str) -> None:
        """Add to the current line: to its head while there is room, else to its count."""
        room = self._max_chars - self._head_chars
        kept = text[:room] if room > 0 else ""
        if kept:
            self._head.append(kept)
            self._head_chars += len(kept)
        self._cut_chars += len(text) - len(kept)

    def _emit(self) -> None:
        self._extend(self._decoder.decode(b"", final=True))
        text = "".join(self._head)
        cut = self._cut_chars
        if not cut:  # its "\r\n" may have come in two reads
            text = text.removesuffix("\r")
        self._head, self._head_chars, self._cut_chars, self._started = [], 0, 0, False
        self._decoder.reset()
        self._on_line(self._level, text, cut)

    def close(self) -> None:
        """Read what is left (the process has exited), emit the last partial line, stop."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            while data := os.read(self._fd, READ_CHUNK):
                self._take(data)
        if self._started:
            self._emit()
        os.close(self._fd)


def read_output(
    fds: tuple[int, int],
    on_line: Callable[[int, str, int], None],
    max_chars: int = LOG_LINE_LIMIT_CHARS,
) -> list[OutputReader]:
    """Readers for a run's stdout (INFO lines) and stderr (ERROR lines)."""
    levels = (logging.INFO, logging.ERROR)
    return [
        OutputReader(fd, level, on_line, max_chars)
        for fd, level in zip(fds, levels, strict=True)
        if fd >= 0
    ]

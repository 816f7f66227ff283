"""A run's stdout and stderr, read by the runner line by line as they arrive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

READ_CHUNK = 65536
MAX_LINE = 64 * 1024
"""A line longer than this is logged in pieces."""


def read_ready(fd: int) -> bytes | None:
    """What a non-blocking pipe holds now: None if nothing yet, b"" at its end (or on an error)."""
    try:
        return os.read(fd, READ_CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


class OutputReader:
    """Reads one non-blocking pipe on the event loop, handing each complete line on."""

    def __init__(self, fd: int, level: int, on_line: Callable[[int, str], None]) -> None:
        self._fd = fd
        self._level = level
        self._on_line = on_line
        self._partial = b""
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
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._emit(line)
        while len(self._partial) > MAX_LINE:
            self._emit(self._partial[:MAX_LINE])
            self._partial = self._partial[MAX_LINE:]

    def _emit(self, line: bytes) -> None:
        self._on_line(self._level, line.decode(errors="replace").rstrip("\r"))

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
        if self._partial:
            self._emit(self._partial)
            self._partial = b""
        os.close(self._fd)


def read_output(fds: tuple[int, int], on_line: Callable[[int, str], None]) -> list[OutputReader]:
    """Readers for a run's stdout (INFO lines) and stderr (ERROR lines)."""
    levels = (logging.INFO, logging.ERROR)
    return [
        OutputReader(fd, level, on_line) for fd, level in zip(fds, levels, strict=True) if fd >= 0
    ]

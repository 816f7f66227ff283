"""What a flow's hooks print when its runner calls them: kept, to become the run's log lines.

The runner calls on_crashed, on_cancellation (and on_failure, for a run whose process
could not) in a thread of its own process. What such a hook printed would reach the
runner's stdout as bare text, not JSON with ``HEADRACE_LOG_FORMAT=json``, and be in no
run's log. While a hook thread runs, ``sys.stdout`` and ``sys.stderr`` are stand-ins that
keep that thread's writes and pass every other thread's on unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, Protocol, TextIO, cast
from uuid import UUID

_kept = threading.local()
_lock = threading.Lock()
_users = 0


class RunLog(Protocol):
    """Where a run's lines go: the runner's log sink (stored, and echoed to the console)."""

    def add(
        self,
        flow_run_id: UUID,
        run_name: str,
        level: int,
        message: str,
        ts: float,
        after: Any = None,
        cut: int = 0,
        fields: dict[str, object] | None = None,
    ) -> None: ...

    def end_attempt(
        self, flow_run_id: UUID, run_name: str, fields: dict[str, object] | None = None
    ) -> None: ...


class _PerThread:
    """A stand-in for a standard stream: a hook thread's writes are kept, others' pass on."""

    def __init__(self, original: TextIO, level: int) -> None:
        self.original = original
        self.level = level

    def write(self, text: str) -> int:
        chunks: list[tuple[int, str]] | None = getattr(_kept, "chunks", None)
        if chunks is None:
            return self.original.write(text)
        chunks.append((self.level, text))
        return len(text)

    def flush(self) -> None:
        if getattr(_kept, "chunks", None) is None:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


def _install(on: bool) -> None:
    """Put the stand-ins in place (``on``), or take them away if they are still there."""
    for name, level in (("stdout", logging.INFO), ("stderr", logging.ERROR)):
        stream = getattr(sys, name)
        if on and not isinstance(stream, _PerThread):
            setattr(sys, name, cast(TextIO, _PerThread(stream, level)))
        elif not on and isinstance(stream, _PerThread):
            setattr(sys, name, stream.original)


@contextlib.contextmanager
def printed_lines(into: list[tuple[int, str]]) -> Iterator[None]:
    """In this thread, what is printed is kept: at the end ``into`` holds its lines, each
    with its level (stdout's INFO, stderr's ERROR, as a run's process's lines)."""
    global _users
    chunks: list[tuple[int, str]] = []
    with _lock:
        _users += 1
        _install(True)
    _kept.chunks = chunks
    try:
        yield
    finally:
        _kept.chunks = None
        with _lock:
            _users -= 1
            if not _users:
                _install(False)
        into.extend(lines_of(chunks))


def lines_of(chunks: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Whole lines, in the order they were finished, from each stream's writes."""
    partial: dict[int, str] = {}
    lines: list[tuple[int, str]] = []
    for level, text in chunks:
        *done, partial[level] = (partial.get(level, "") + text).split("\n")
        lines += [(level, line.removesuffix("\r")) for line in done]
    return lines + [(level, rest) for level, rest in partial.items() if rest]

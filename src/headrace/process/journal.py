"""The outcome journal's entries: how a run's process records its end before it exits.

A run's process writes its final event to a file of its runner's journal
before it reports it over the pipe, so that an outcome survives the runner
being killed the moment after the body ended: recovery on the same host
stores the recorded outcome rather than running the body again. One small
file per attempt, written in one ``write``; no fsync: the OS keeps it across
the death of any process, though not across a power loss.

Both sides use this module: the child writes, the runner reads and removes.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from headrace.process.protocol import Completed, Crashed, Failed, FinalEvent, Invalid

_KINDS: dict[str, type[Completed] | type[Failed] | type[Invalid] | type[Crashed]] = {
    "completed": Completed,
    "failed": Failed,
    "invalid": Invalid,
    "crashed": Crashed,
}
_NAMES = {kind: name for name, kind in _KINDS.items()}


def entry_name(flow_run_id: object, run_count: int) -> str:
    """One attempt's entry: an attempt's outcome never stands for another's."""
    return f"{flow_run_id}-{run_count}"


def write_entry(path: str, event: FinalEvent) -> None:
    """Record ``event`` at ``path`` in one write (a torn entry reads as no entry)."""
    data = json.dumps([_NAMES[type(event)], event[0]], ensure_ascii=False).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_entry(path: Path) -> FinalEvent | None:
    """The event recorded at ``path``, or None when there is none (or only part of one)."""
    try:
        kind, value = json.loads(path.read_bytes())
        event: Any = _KINDS[kind](value)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    result: FinalEvent = event
    return result


def remove_entry(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

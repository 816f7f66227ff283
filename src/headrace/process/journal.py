"""The outcome journal's format: how a run's process records its end before it exits.

A run's process appends its final event to its runner's journal before it
reports it over the pipe, so that an outcome survives the runner being
killed the moment after the body ended: recovery on the same host stores
the recorded outcome rather than running the body again. One line per
attempt, appended in one ``write`` to a file shared by the runner's runs
(appending costs a few microseconds; creating a file per run costs a
millisecond on common filesystems). No fsync: the OS keeps what was written
across the death of any process, though not across a power loss.

Both sides use this module: the child appends, the runner reads.
"""

from __future__ import annotations

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


def entry_key(flow_run_id: object, run_count: int) -> str:
    """One attempt's key: an attempt's outcome never stands for another's."""
    return f"{flow_run_id}-{run_count}"


def append_entry(path: str, key: str, event: FinalEvent) -> None:
    """Append ``event`` under ``key`` in one write: entries of concurrent runs never mix."""
    # ASCII (the default): a lone surrogate is escaped, where UTF-8 could not encode it.
    line = json.dumps([key, _NAMES[type(event)], list(event)]) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read_entries(path: Path) -> dict[str, FinalEvent]:
    """The events recorded in ``path`` by key; a torn or foreign line counts as none."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return {}
    entries: dict[str, FinalEvent] = {}
    for line in lines:
        try:
            key, kind, fields = json.loads(line)
            event: Any = _KINDS[kind](*fields)
        except (ValueError, TypeError, KeyError):
            continue
        entries[str(key)] = event
    return entries

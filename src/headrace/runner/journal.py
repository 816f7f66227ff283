"""The runner's outcome journal: outcomes its runs recorded on this host, until stored.

Each runner has a directory, ``<home>/journal/<runner id>``, of segment files
its runs' processes append their final events to (``headrace.process.journal``).
A segment takes the runs launched while it is the newest, up to
``SEGMENT_RUNS``; it is deleted once it is no longer the newest and every one
of its runs' outcomes is in the database. What a runner that died left
behind is replayed by recovery: the recorded outcome is stored, and a body
that finished never runs again on this host. An entry only counts while its
run is still active under that attempt, so entries already stored need no
removal.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.process.journal import entry_key, read_entries
from headrace.process.protocol import FinalEvent
from headrace.store import RunnerRecord

logger = logging.getLogger(__name__)

JOURNAL_DIRECTORY = "journal"
OWNER_FILE = "runner.json"
"""The pid and start time of the journal's runner: whether it still lives, as on this host."""
SEGMENT_RUNS = 1000
"""Runs per segment: a segment's disk space is given back once its runs are all stored."""


@dataclass(frozen=True)
class Entry:
    """Where one attempt's process records its end."""

    segment: Path
    key: str


class Journal:
    """The outcome journals under one headrace home; this runner appends to its own."""

    def __init__(self, home: Path, runner: RunnerRecord) -> None:
        self.root = home / JOURNAL_DIRECTORY
        self.directory = self.root / str(runner.id)
        self._owner = {"pid": runner.pid, "started": runner.started.isoformat()}
        self._segment = 0
        self._launched = 0
        self._outstanding: Counter[Path] = Counter()

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / OWNER_FILE).write_text(json.dumps(self._owner))

    def entry_for(self, run: FlowRun) -> Entry:
        """Where the process of the run's current attempt is to record its end."""
        if self._launched == SEGMENT_RUNS:
            self._segment += 1
            self._launched = 0
            self._forget_done(self._path(self._segment - 1))
        self._launched += 1
        segment = self._path(self._segment)
        self._outstanding[segment] += 1
        return Entry(segment, entry_key(run.id, run.run_count))

    def recorded(self, entry: Entry) -> FinalEvent | None:
        """What the process recorded (rarely needed: it reports over its pipe too)."""
        return read_entries(entry.segment).get(entry.key)

    def stored(self, entry: Entry) -> None:
        """The entry's outcome is in the database: its segment may go once all its runs are."""
        self._outstanding[entry.segment] -= 1
        if entry.segment != self._path(self._segment):
            self._forget_done(entry.segment)

    def _forget_done(self, segment: Path) -> None:
        if self._outstanding[segment] <= 0:
            del self._outstanding[segment]
            with contextlib.suppress(FileNotFoundError):
                segment.unlink()

    def _path(self, number: int) -> Path:
        return self.directory / f"{number}.log"

    def reader(self) -> JournalReader:
        return JournalReader(self.root)

    def close(self) -> None:
        """Remove this runner's journal, unless outcomes still wait in it for recovery."""
        if any(count > 0 for count in self._outstanding.values()):
            logger.warning("Outcomes not yet stored are kept in %s for recovery", self.directory)
            return
        shutil.rmtree(self.directory, ignore_errors=True)


class JournalReader:
    """Reads the journals of runners on this host, each at most once (for one recovery pass)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._entries: dict[UUID, dict[str, FinalEvent]] = {}

    def recorded(self, runner_id: UUID, run: FlowRun) -> FinalEvent | None:
        """The end that runner ``runner_id``'s process for the run's current attempt recorded."""
        entries = self._entries.get(runner_id)
        if entries is None:
            entries = {}
            for segment in sorted((self._root / str(runner_id)).glob("*.log")):
                entries.update(read_entries(segment))
            self._entries[runner_id] = entries
        return entries.get(entry_key(run.id, run.run_count))


@dataclass(frozen=True)
class ForeignJournal:
    """Another runner's journal on this host, as a sweep sees it."""

    directory: Path
    pid: int | None
    started: datetime | None

    def attempts(self) -> Iterator[tuple[UUID, int]]:
        """The (run id, attempt) of every outcome it recorded."""
        for segment in self.directory.glob("*.log"):
            for key in read_entries(segment):
                run_id, _, count = key.rpartition("-")
                with contextlib.suppress(ValueError):
                    yield UUID(run_id), int(count)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def foreign_journals(journal: Journal) -> list[ForeignJournal]:
    """The journals of the other runners that shared this home."""
    found = []
    for directory in journal.root.glob("*"):
        if directory == journal.directory or not directory.is_dir():
            continue
        try:
            owner = json.loads((directory / OWNER_FILE).read_text())
            pid, started = int(owner["pid"]), datetime.fromisoformat(owner["started"])
        except (OSError, ValueError, KeyError, TypeError):
            pid, started = None, None
        found.append(ForeignJournal(directory, pid, started))
    return found

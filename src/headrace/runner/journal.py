"""The runner's outcome journal: outcomes its runs recorded on this host, until stored.

Each runner has a directory, ``<home>/journal/<runner id>``, where its runs'
processes record their final events (``headrace.process.journal``). The
runner removes an entry once the outcome is in the database. Entries left
behind by a runner that died are replayed by recovery: the recorded outcome
is stored, and a body that finished never runs again on this host.
"""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.process.journal import entry_name, read_entry, remove_entry
from headrace.process.protocol import FinalEvent

logger = logging.getLogger(__name__)

JOURNAL_DIRECTORY = "journal"


class Journal:
    """The outcome journals under one headrace home; this runner writes to its own."""

    def __init__(self, home: Path, runner_id: UUID) -> None:
        self.root = home / JOURNAL_DIRECTORY
        self.directory = self.root / str(runner_id)

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, run: FlowRun) -> Path:
        """Where this runner's process for the run's current attempt records its end."""
        return self.directory / entry_name(run.id, run.run_count)

    def entry_of(self, runner_id: UUID, run: FlowRun) -> Path:
        """Where runner ``runner_id``'s process for the run's current attempt recorded it."""
        return self.root / str(runner_id) / entry_name(run.id, run.run_count)

    def read(self, path: Path) -> FinalEvent | None:
        return read_entry(path)

    def remove(self, path: Path) -> None:
        remove_entry(path)

    def close(self) -> None:
        """Remove this runner's directory if nothing waits in it (else recovery replays it)."""
        try:
            self.directory.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # not empty
            logger.warning("Outcomes not yet stored are kept in %s for recovery", self.directory)

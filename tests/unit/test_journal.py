"""The outcome journal: entries read back as written, torn lines count as none, segments go."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from headrace.flow_runs import FlowRun
from headrace.process.journal import append_entry, entry_key, read_entries
from headrace.process.protocol import Completed, Crashed, Failed, FinalEvent, Invalid
from headrace.runner import journal as journal_module
from headrace.runner.journal import Journal
from headrace.store import RunnerRecord


def test_entries_read_back_as_written_and_a_torn_line_counts_as_none(tmp_path: Path) -> None:
    segment = tmp_path / "0.log"
    events: list[FinalEvent] = [
        Completed({"rows": [1, "é", "lone \ud800 surrogate"]}),
        Completed(None, "The result was not stored: too large", result_truncated=True),
        Failed("boom"),
        Invalid("bad x"),
        Crashed("gone"),
    ]
    for number, event in enumerate(events):
        append_entry(str(segment), entry_key("run", number), event)
    with segment.open("a") as handle:
        handle.write('["run-9", "completed", {"cut')  # a write the kill interrupted
    entries = read_entries(segment)
    assert entries == {entry_key("run", n): event for n, event in enumerate(events)}
    assert read_entries(tmp_path / "missing.log") == {}


def run_like(run_count: int = 1) -> FlowRun:
    return FlowRun.model_construct(id=uuid4(), run_count=run_count)


def test_a_segment_goes_once_it_is_full_and_all_its_outcomes_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_RUNS", 2)
    journal = Journal(tmp_path, RunnerRecord(name="runner"))
    journal.open()
    first, second, third = (journal.entry_for(run_like()) for _ in range(3))
    for entry in (first, second, third):
        append_entry(str(entry.segment), entry.key, Completed(None))
    assert first.segment == second.segment != third.segment
    journal.stored(first)
    assert first.segment.exists(), "an outcome in it is not stored yet"
    journal.stored(second)
    assert not first.segment.exists()
    journal.close()
    assert journal.directory.exists(), "an outcome not yet stored must wait for recovery"
    journal.stored(third)
    journal.close()
    assert not journal.directory.exists()


def test_recovery_reads_the_entry_of_the_runs_current_attempt_only(tmp_path: Path) -> None:
    record = RunnerRecord(name="runner")
    runner_id = record.id
    journal = Journal(tmp_path, record)
    journal.open()
    run = run_like(run_count=2)
    entry = journal.entry_for(run)
    append_entry(str(entry.segment), entry_key(run.id, 1), Failed("the first attempt"))
    reader = journal.reader()
    assert reader.recorded(runner_id, run) is None
    append_entry(str(entry.segment), entry.key, Completed(3))
    assert journal.reader().recorded(runner_id, run) == Completed(3)
    assert journal.reader().recorded(uuid4(), run) is None

"""The console's lines: a run's start and each way it can end."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest

from headrace.flow_runs import FlowRun
from headrace.runner.console import RunConsole, last_line
from headrace.states import State, StateType, utcnow


def run_in(state: StateType, message: str | None = None) -> FlowRun:
    now = utcnow()
    return FlowRun(
        id=uuid4(),
        name="brisk-otter",
        flow_name="etl",
        state=State(type=state, message=message),
        created=now,
        updated=now,
    )


@pytest.mark.parametrize(
    ("state", "message", "line"),
    [
        (StateType.COMPLETED, None, "Run 'brisk-otter' of etl completed in 1.50s"),
        (
            StateType.FAILED,
            "Traceback (most recent call last):\n  ...\nValueError: no rows\n",
            "Run 'brisk-otter' of etl failed after 1.50s: ValueError: no rows",
        ),
        (
            StateType.CRASHED,
            "exited with code 3",
            "Run 'brisk-otter' of etl crashed after 1.50s: exited with code 3",
        ),
        (
            StateType.CANCELLED,
            "Cancelled by request",
            "Run 'brisk-otter' of etl was cancelled after 1.50s",
        ),
        (
            StateType.SCHEDULED,
            "Attempt 1 failed, retrying",
            "Run 'brisk-otter' of etl ended after 1.50s and will run again: "
            "Attempt 1 failed, retrying",
        ),
    ],
)
def test_each_end_gets_its_line(state: StateType, message: str | None, line: str) -> None:
    lines: list[str] = []
    console = RunConsole({}, write=lines.append)
    run = run_in(StateType.PENDING)
    console.run_started(run)
    console.run_finished(run, run_in(state, message), 1.5)
    assert lines == [f"Run 'brisk-otter' of etl started ({run.id})", line]


def test_last_line_of_nothing_says_so() -> None:
    assert last_line(None) == last_line("\n \n") == "(no message)"


def test_with_json_logs_the_lines_are_records_with_the_runs_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    printed: list[str] = []
    console = RunConsole({}, write=printed.append, as_records=True)
    run = run_in(StateType.PENDING)
    with caplog.at_level(logging.INFO, logger="headrace.console"):
        console.run_started(run)
        console.run_finished(run, run_in(StateType.FAILED, "ValueError: no rows"), 1.5)
    assert printed == []  # nothing in plain text among the JSON lines
    started, failed = caplog.records
    assert started.getMessage() == f"Run 'brisk-otter' of etl started ({run.id})"
    assert failed.getMessage() == "Run 'brisk-otter' of etl failed after 1.50s: ValueError: no rows"
    assert failed.__dict__["flow_run_id"] == str(run.id)
    assert failed.__dict__["flow_run_name"] == "brisk-otter"
    assert (failed.__dict__["state"], failed.__dict__["duration_seconds"]) == ("FAILED", 1.5)

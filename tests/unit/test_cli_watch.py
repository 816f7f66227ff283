"""Following a run: states and log lines interleaved as they happened."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from headrace.cli.watch import in_order
from headrace.flow_runs import LogRecord
from headrace.states import State, StateType

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
RUN_ID = uuid4()


def state(kind: StateType, ms: int) -> State:
    return State(type=kind, timestamp=T0 + timedelta(milliseconds=ms))


def line(message: str, ms: int) -> LogRecord:
    return LogRecord(
        flow_run_id=RUN_ID, level=20, message=message, timestamp=T0 + timedelta(milliseconds=ms)
    )


def labels(entries: list[State | LogRecord]) -> list[str]:
    return [e.type.value if isinstance(e, State) else e.message for e in entries]


def test_states_and_lines_read_in_one_poll_come_out_in_time_order() -> None:
    states = [state(StateType.RUNNING, 10), state(StateType.CANCELLING, 30)]
    logs = [line("working", 20), line("still working", 40)]
    assert labels(in_order(states, logs)) == ["RUNNING", "working", "CANCELLING", "still working"]


def test_a_state_comes_before_a_line_of_the_same_instant() -> None:
    assert labels(in_order([state(StateType.RUNNING, 10)], [line("hello", 10)])) == [
        "RUNNING",
        "hello",
    ]


def test_a_final_state_comes_after_every_line_whatever_its_clock_says() -> None:
    # A final state's time comes from the runner, a line's from the run's process.
    states = [state(StateType.RUNNING, 10), state(StateType.COMPLETED, 20)]
    logs = [line("last words", 25)]
    assert labels(in_order(states, logs)) == ["RUNNING", "last words", "COMPLETED"]

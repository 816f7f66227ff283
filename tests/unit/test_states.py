from __future__ import annotations

import itertools

import pytest

from headrace.exceptions import InvalidStateTransition
from headrace.states import (
    TERMINAL_STATES,
    State,
    StateType,
    can_transition,
    cancellation_target,
    check_transition,
    sources_of,
)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("target", list(StateType))
def test_nothing_leaves_a_terminal_state(terminal: StateType, target: StateType) -> None:
    assert not can_transition(terminal, target)
    with pytest.raises(InvalidStateTransition, match="already ended"):
        check_transition(terminal, target)


def test_pending_only_from_scheduled() -> None:
    assert sources_of(StateType.PENDING) == {StateType.SCHEDULED}


def test_the_happy_path_and_cancellation_are_allowed() -> None:
    path = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.COMPLETED]
    for current, proposed in itertools.pairwise(path):
        check_transition(current, proposed)
    check_transition(StateType.RUNNING, StateType.CANCELLING)
    check_transition(StateType.CANCELLING, StateType.CANCELLED)
    check_transition(StateType.SCHEDULED, StateType.CANCELLED)


def test_scheduled_cannot_jump_to_running() -> None:
    with pytest.raises(InvalidStateTransition, match="SCHEDULED to RUNNING"):
        check_transition(StateType.SCHEDULED, StateType.RUNNING)


def test_state_names_default_from_type() -> None:
    assert State(type=StateType.COMPLETED).name == "Completed"
    assert State(type=StateType.SCHEDULED, name="AwaitingRetry").name == "AwaitingRetry"
    assert State(type="FAILED").timestamp.tzinfo is not None  # type: ignore[arg-type]


def test_cancellation_targets() -> None:
    assert cancellation_target(StateType.SCHEDULED) == StateType.CANCELLED
    assert cancellation_target(StateType.RUNNING) == StateType.CANCELLING
    assert cancellation_target(StateType.PENDING) == StateType.CANCELLING
    assert cancellation_target(StateType.COMPLETED) is None


def test_an_overdue_scheduled_run_is_named_late_and_keeps_its_type() -> None:
    from datetime import timedelta

    from headrace.states import LATE, shown_late, utcnow

    now, minute = utcnow(), timedelta(minutes=1)
    queued = State(type=StateType.SCHEDULED, message="waiting")
    late = shown_late(queued, now - 2 * minute, now, minute)
    assert (late.type, late.name, late.message) == (StateType.SCHEDULED, LATE, "waiting")
    assert shown_late(queued, now - minute, now, minute) is queued  # exactly on the threshold
    assert shown_late(queued, None, now, minute) is queued
    running = State(type=StateType.RUNNING)
    assert shown_late(running, now - 60 * minute, now, minute) is running

"""Flow run states and the rules for moving between them.

::

    SCHEDULED -> PENDING -> RUNNING -> COMPLETED | FAILED | CRASHED
                     \\          \\-> CANCELLING -> CANCELLED
                      \\-> CANCELLING / CRASHED
    SCHEDULED -> CANCELLED               (a cancelled scheduled run never starts)
    SCHEDULED -> CRASHED                 (sent to a runner that is gone, and none can run it)
    PENDING | RUNNING -> SCHEDULED       (requeued on drain, or awaiting a retry)

Terminal states are final: a retry is a new attempt recorded on the way out of
RUNNING (back to SCHEDULED), never a move out of FAILED. A SCHEDULED run
overdue by more than a threshold reads as named ``Late`` (``shown_late``).
Pure: no I/O here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from headrace.exceptions import InvalidStateTransition


class StateType(StrEnum):
    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CRASHED = "CRASHED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def default_name(self) -> str:
        return self.value.capitalize()


TERMINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}
)
"""A run in one of these has ended and never moves again."""

ACTIVE_STATES = frozenset({StateType.PENDING, StateType.RUNNING, StateType.CANCELLING})
"""A runner owns a run in one of these: it is starting, running or being cancelled."""

_ENDINGS = TERMINAL_STATES - {StateType.CANCELLED}

ALLOWED_TRANSITIONS: dict[StateType, frozenset[StateType]] = {
    StateType.SCHEDULED: frozenset({StateType.PENDING, StateType.CANCELLED, StateType.CRASHED}),
    StateType.PENDING: frozenset(
        {StateType.RUNNING, StateType.SCHEDULED, StateType.CANCELLING, StateType.CANCELLED}
        | _ENDINGS
    ),
    StateType.RUNNING: frozenset(
        {StateType.SCHEDULED, StateType.CANCELLING, StateType.CANCELLED} | _ENDINGS
    ),
    StateType.CANCELLING: frozenset({StateType.CANCELLED} | _ENDINGS),
    StateType.COMPLETED: frozenset(),
    StateType.FAILED: frozenset(),
    StateType.CRASHED: frozenset(),
    StateType.CANCELLED: frozenset(),
}


def can_transition(current: StateType, proposed: StateType) -> bool:
    """Whether a run in ``current`` may move to ``proposed``."""
    return proposed in ALLOWED_TRANSITIONS[current]


def check_transition(current: StateType, proposed: StateType) -> None:
    """Raise :class:`InvalidStateTransition` unless ``current -> proposed`` is allowed."""
    if not can_transition(current, proposed):
        raise InvalidStateTransition(
            f"A flow run cannot move from {current.value} to {proposed.value}"
            + (" (it has already ended)" if current.is_terminal else "")
        )


def sources_of(proposed: StateType) -> frozenset[StateType]:
    """Every state from which a run may move to ``proposed`` (for compare-and-set)."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if proposed in targets)


def utcnow() -> datetime:
    return datetime.now(UTC)


class State(BaseModel):
    """A run's state at one moment: what it is, its display name and why."""

    model_config = ConfigDict(frozen=True)

    type: StateType
    name: str = ""
    message: str | None = None
    timestamp: datetime = Field(default_factory=utcnow)

    def model_post_init(self, __context: object) -> None:
        if not self.name:
            object.__setattr__(self, "name", self.type.default_name)

    @property
    def is_terminal(self) -> bool:
        return self.type.is_terminal


LATE = "Late"
"""The name a SCHEDULED run is shown with once it is overdue (its type stays SCHEDULED)."""


def shown_late(state: State, due: datetime | None, now: datetime, late_after: timedelta) -> State:
    """``state`` as readers see it: a SCHEDULED run due more than ``late_after`` ago is
    named Late, as nobody started it. Decided on each read, never written: whenever a
    runner does claim it, the run moves on as any other."""
    if state.type != StateType.SCHEDULED or due is None or now - due <= late_after:
        return state
    return state if state.name == LATE else state.model_copy(update={"name": LATE})


def scheduled(message: str | None = None, name: str = "Scheduled") -> State:
    return State(type=StateType.SCHEDULED, name=name, message=message)


def cancellation_target(current: StateType) -> StateType | None:
    """Where a cancel request takes a run: None once it has ended.

    A SCHEDULED run has no process, so it is cancelled at once; a started one
    becomes CANCELLING until its runner has killed the process.
    """
    if current.is_terminal:
        return None
    if current == StateType.SCHEDULED:
        return StateType.CANCELLED
    return StateType.CANCELLING

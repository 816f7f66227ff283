"""Flow runs and their logs as frozen value objects, the shape clients and HTTP share."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from headrace.states import State, StateType, shown_late

RESULT_SIZE_LIMIT = 64 * 1024
"""Bytes of a run's JSON result kept in the store; a larger result is not stored, and its run
says so (``result_truncated``)."""


class FlowRun(BaseModel):
    """One run of a flow: what to run, with what, and where it stands."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    name: str
    flow_name: str
    deployment_id: UUID | None = None
    entrypoint: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    parent_task_run_id: UUID | None = None
    idempotency_key: str | None = None
    state: State
    created: datetime
    updated: datetime
    expected_start_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    run_count: int = 0
    max_retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None
    retry_delays: list[float] | None = None
    """One delay per retry, the last one repeated (None: ``retry_delay_seconds`` each time)."""
    retry_jitter_factor: float | None = None
    runner_name: str | None = None
    runner_id: UUID | None = None
    pid: int | None = None
    result: Any = None
    result_truncated: bool = False
    """The run returned a result too large to keep: ``result`` is null, not the value."""
    traceparent: str | None = None
    """The W3C trace context of the request that created it: its spans join that trace."""
    parent_flow_run_id: UUID | None = None
    """The run that called this one's flow (a subflow), or ran its deployment."""
    result_ref: str | None = None
    """Where the whole result is kept when it is larger than a row holds (``result`` is null)."""

    @property
    def state_type(self) -> StateType:
        return self.state.type

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_retries + 1 - self.run_count)

    def as_seen(self, now: datetime, late_after_seconds: float) -> FlowRun:
        """The run as readers see it at ``now``: named Late when overdue (``shown_late``)."""
        late_after = timedelta(seconds=late_after_seconds)
        state = shown_late(self.state, self.expected_start_time, now, late_after)
        return self if state is self.state else self.model_copy(update={"state": state})


class NewFlowRun(BaseModel):
    """What a caller supplies to create a flow run; the store fills in the rest."""

    flow_name: str
    deployment_id: UUID | None = None
    entrypoint: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    parent_task_run_id: UUID | None = None
    idempotency_key: str | None = None
    name: str | None = None
    expected_start_time: datetime | None = None
    state_name: str = "Scheduled"
    state_message: str | None = None
    max_retries: int = 0
    retry_delay_seconds: float = 0
    timeout_seconds: float | None = None
    retry_delays: list[float] | None = None
    """One delay per retry, the last one repeated (None: ``retry_delay_seconds`` each time)."""
    retry_jitter_factor: float | None = None
    runner_id: UUID | None = None
    """For a run of no deployment: the one runner that may claim it (None: only
    ``Runner.execute_flow_run`` does)."""
    runner_name: str | None = None
    traceparent: str | None = None
    """The W3C trace context the run continues (``headrace.runner.tracing``)."""
    parent_flow_run_id: UUID | None = None


class LogRecord(BaseModel):
    """One line a run wrote, with its level and time."""

    model_config = ConfigDict(frozen=True)

    id: int = 0
    flow_run_id: UUID
    level: int
    message: str
    timestamp: datetime

    @property
    def level_name(self) -> str:
        import logging

        return logging.getLevelName(self.level)

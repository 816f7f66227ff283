"""The store's vocabulary: runner records, state changes and page sizes, shared by every part."""

from __future__ import annotations

import os
import socket
from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field

from headrace.states import State, StateType, utcnow


class RunnerRecord(BaseModel):
    """One live runner process, as other runners see it through its heartbeat."""

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid4)
    name: str
    host: str = Field(default_factory=socket.gethostname)
    pid: int = Field(default_factory=os.getpid)
    started: datetime = Field(default_factory=utcnow)
    heartbeat: datetime = Field(default_factory=utcnow)
    stopped: datetime | None = None
    process_limit: int | None = None
    """Most runs it holds at once: every dashboard shows it against the runs it holds."""
    backlog_limit: int | None = None
    """Most runs that may wait for it: ``headrace ui`` refuses triggers past it, as the
    runner's own webserver does."""

    def presumed_alive(self, now: datetime, heartbeat_timeout: timedelta) -> bool:
        """Not stopped, and a heartbeat within the timeout: what runners on other hosts
        go by before taking over its runs, and what readers show as alive."""
        return self.stopped is None and now - self.heartbeat <= heartbeat_timeout


MAX_PAGE = 1000
"""Most rows one listing query returns."""


class Attempt(NamedTuple):
    """Which claim of a run a runner is executing: a write for it fails once another took over."""

    runner_id: UUID
    run_count: int


class StateChange(NamedTuple):
    """One requested state change: run, new state, allowed current states, other fields."""

    flow_run_id: UUID
    state: State
    expected: Collection[StateType] | None
    fields: dict[str, Any]
    attempt: Attempt | None = None

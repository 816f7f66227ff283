"""Task runs as frozen value objects, the shape clients and HTTP share."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from headrace.states import State

TASK_CACHE_ENTRIES_PER_JOB = 1000
"""Live task cache entries a run's process is handed at most (the newest)."""
TASK_CACHE_BYTES_PER_JOB = 8 * 1024 * 1024
"""Bytes of cached results a run's process is handed at most (the newest first)."""


class TaskRun(BaseModel):
    """One call of a task inside a flow run: its attempts and how it ended."""

    model_config = ConfigDict(frozen=True)

    id: UUID
    flow_run_id: UUID
    name: str
    task_name: str
    state: State
    run_count: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    cache_key: str | None = None


class TaskCacheEntry(BaseModel):
    """A task result kept under its cache key, for the runs of one deployment (``scope``)."""

    model_config = ConfigDict(frozen=True)

    scope: str
    key: str
    result: object = None
    expires: datetime | None = None


def cache_scope(deployment_id: UUID | None, flow_name: str) -> str:
    """Whose runs share cached task results: a deployment's (a flow's, for runs of none)."""
    return str(deployment_id) if deployment_id is not None else f"flow:{flow_name}"

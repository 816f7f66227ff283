"""Subflow runs, recorded as the processes executing their parents report them.

A run's process tells of each flow it called inside the run (``protocol.py``,
"child flow runs"); this writes each child's creation, retries, end and logs
in the order they were told, one child's writes after another's never mixed
up. When the parent's process ends, a child still open ends with it: CRASHED
(CANCELLED when the parent was cancelled), never left RUNNING.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from headrace.exceptions import HeadraceError
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.process.protocol import (
    ChildEvent,
    ChildRunEnded,
    ChildRunRestarted,
    ChildRunRetrying,
    ChildRunStarted,
    Log,
)
from headrace.process.results import RESULT_STORAGE_VARIABLE
from headrace.runner.logsink import LogSink
from headrace.settings import ENV_PREFIX, Settings
from headrace.states import ACTIVE_STATES, State, StateType
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)

OPEN_STATES = ACTIVE_STATES | {StateType.SCHEDULED}
"""A child run in one of these has not ended (SCHEDULED: awaiting its retry)."""


@dataclass
class _Child:
    id: UUID
    name: str
    created: asyncio.Task[None]
    last: asyncio.Task[None] | None = None
    ended: bool = False


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class SubflowEvents:
    """The child runs of the runs an executor is executing, and their writes."""

    def __init__(self, store: AsyncStore, logs: LogSink) -> None:
        self._store = store
        self._logs = logs
        self._children: dict[UUID, dict[UUID, _Child]] = {}
        """By parent run id: its children, by id."""

    def take(self, parent: FlowRun, event: ChildEvent) -> bool:
        """Record ``event`` if it is about a child run of ``parent``: whether it was."""
        match event:
            case ChildRunStarted():
                self._started(parent, event)
            case ChildRunRetrying(child_id, message, timestamp, retry_at):
                when = _when(timestamp)
                state = State(
                    type=StateType.SCHEDULED, name="AwaitingRetry", message=message, timestamp=when
                )
                fields = {"expected_start_time": _when(retry_at)}
                self._then(parent, child_id, self._set(state, [StateType.RUNNING], fields))
            case ChildRunRestarted(child_id, run_count, started):
                restart = self._store.restart_child_flow_run
                self._then(parent, child_id, lambda run: restart(run, run_count, _when(started)))
            case ChildRunEnded():
                self._ended(parent, event)
            case Log(level, message, timestamp, flow_run_id=str() as child_id):
                child = self._child(parent, child_id)
                if child is None:
                    return False  # not known here: the line stays the parent's
                self._logs.add(child.id, child.name, level, message, timestamp, after=child.created)
            case _:
                return False
        return True

    def _child(self, parent: FlowRun, child_id: str) -> _Child | None:
        with contextlib.suppress(ValueError):
            return self._children.get(parent.id, {}).get(UUID(child_id))
        return None

    def created(self, parent: FlowRun, child_id: str) -> asyncio.Task[None] | None:
        """The write creating ``parent``'s subflow run ``child_id`` (None: no such child):
        what is written of that run (its task runs) waits for it."""
        child = self._child(parent, child_id)
        return None if child is None else child.created

    def _started(self, parent: FlowRun, event: ChildRunStarted) -> None:
        new = NewFlowRun(
            flow_name=event.flow_name,
            name=event.name,
            parameters=event.parameters,
            parent_flow_run_id=UUID(event.parent_id),
            max_retries=event.max_retries,
            retry_delay_seconds=event.retry_delay_seconds,
            timeout_seconds=event.timeout_seconds,
            runner_id=parent.runner_id,
            runner_name=parent.runner_name,
        )
        child_id = UUID(event.id)
        create = self._store.create_child_flow_run(
            new, flow_run_id=child_id, started=_when(event.started), pid=event.pid
        )
        task = asyncio.get_running_loop().create_task(self._written(event.name, create))
        self._children.setdefault(parent.id, {})[child_id] = _Child(child_id, event.name, task)

    def _ended(self, parent: FlowRun, event: ChildRunEnded) -> None:
        when = _when(event.timestamp)
        state = State(type=StateType(event.state_type), message=event.message, timestamp=when)
        fields: dict[str, Any] = {}
        if state.type == StateType.COMPLETED:
            fields = {
                "result": event.result,
                "result_truncated": event.result_truncated,
                "result_ref": event.result_ref,
            }
        child = self._child(parent, event.id)
        if child is not None:
            child.ended = True
        self._then(parent, event.id, self._set(state, ACTIVE_STATES, fields))

    def _set(
        self, state: State, expected: Collection[StateType], fields: dict[str, Any]
    ) -> Callable[[UUID], Awaitable[Any]]:
        return lambda run: self._store.set_state(run, state, expected=expected, **fields)

    def _then(
        self, parent: FlowRun, child_id: str, write: Callable[[UUID], Awaitable[Any]]
    ) -> None:
        """Queue a write of a child run after its earlier ones."""
        child = self._child(parent, child_id)
        if child is None:
            logger.warning("Flow run %s told of an unknown subflow run %s", parent.name, child_id)
            return
        previous = child.last or child.created
        written = self._written(child.name, write(child.id), previous)
        child.last = asyncio.get_running_loop().create_task(written)

    async def _written(
        self, name: str, write: Awaitable[Any], previous: asyncio.Task[None] | None = None
    ) -> None:
        if previous is not None:
            await previous  # never raises: each write logs its own failure
        try:
            await write
        except HeadraceError as exc:
            logger.warning("Could not record a change of subflow run %s: %s", name, exc)

    async def settle(self, parent: FlowRun, parent_state: State) -> None:
        """Wait for the writes of ``parent``'s children, and end those still open with it."""
        children = self._children.pop(parent.id, {})
        for child in children.values():
            await (child.last or child.created)
            self._logs.end_attempt(child.id, child.name)  # with what its log limit dropped
            if child.ended:
                continue
            cancelled = parent_state.type == StateType.CANCELLED
            state = State(
                type=StateType.CANCELLED if cancelled else StateType.CRASHED,
                message=f"Its parent flow run {parent.name} ended "
                f"({parent_state.name}) before it finished",
            )
            await self._written(
                child.name, self._store.set_state(child.id, state, expected=OPEN_STATES)
            )

    def forget(self, parent_id: UUID) -> None:
        """Stop tracking ``parent_id``'s children (recovery ends any left open)."""
        self._children.pop(parent_id, None)


def run_environment(settings: Settings) -> dict[str, str]:
    """What a run's process takes from its runner's settings: the database, so a flow's
    ``get_client()`` or ``run_deployment`` reaches it, and where large results go."""
    return {
        f"{ENV_PREFIX}DATABASE_URL": settings.resolved_database_url,
        f"{ENV_PREFIX}HOME": str(settings.home),
        RESULT_STORAGE_VARIABLE: settings.resolved_result_storage,
    }

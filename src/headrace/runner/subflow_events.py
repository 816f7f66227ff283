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

from headrace.exceptions import HeadraceError, InvalidStateTransition
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
from headrace.process.starter import ChildProcess
from headrace.runner.logsink import LogSink
from headrace.runner.outcomes import LATE_CANCEL
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
    cancel_told: bool = False
    """Its process was told to cancel it."""


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class SubflowEvents:
    """The child runs of the runs an executor is executing, and their writes."""

    def __init__(
        self,
        store: AsyncStore,
        logs: LogSink,
        process_of: Callable[[UUID], ChildProcess | None] = lambda run_id: None,
    ) -> None:
        self._store = store
        self._logs = logs
        self._process_of = process_of
        """The process executing a run (None: not started, or not here)."""
        self._children: dict[UUID, dict[UUID, _Child]] = {}
        """By the id of the run whose process executes them: its children, by id."""

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
                restart = self._restart(parent, run_count, _when(started))
                self._then(parent, child_id, restart)
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

    def _restart(
        self, parent: FlowRun, run_count: int, started: datetime
    ) -> Callable[[UUID], Awaitable[Any]]:
        async def restart(child_id: UUID) -> None:
            try:
                await self._store.restart_child_flow_run(child_id, run_count, started)
            except InvalidStateTransition:
                # Cancelled while it awaited its retry: the attempt its process began stops now.
                self.cancel(parent.id, child_id)

        return restart

    def executing(self) -> set[UUID]:
        """Every child run these processes execute now (a child's children among them)."""
        return {child for children in self._children.values() for child in children}

    def open_children(self) -> dict[UUID, UUID]:
        """The children not ended that no cancel was passed on for: their parents' ids, by id."""
        return {
            child.id: parent_id
            for parent_id, children in self._children.items()
            for child in children.values()
            if not child.ended and not child.cancel_told
        }

    def cancel(self, parent_id: UUID, child_id: UUID) -> bool:
        """Pass a cancel of ``child_id`` on to its parent's process, once: whether it was."""
        child = self._children.get(parent_id, {}).get(child_id)
        if child is None or child.ended or child.cancel_told:
            return False
        process = self._process_of(parent_id)
        if process is None:
            return False
        child.cancel_told = True
        process.cancel_child(child_id)
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
        write = self._set(state, ACTIVE_STATES, fields)
        if state.type == StateType.CANCELLED:
            write = self._cancelled(state)
        elif state.type == StateType.COMPLETED:
            write = self._completed(state, fields)
        # After what its process told of the children it called: those end first.
        self._then(parent, event.id, write, after=self._pending(parent))

    def _cancelled(self, state: State) -> Callable[[UUID], Awaitable[Any]]:
        async def cancelled(run: UUID) -> None:
            try:
                await self._store.set_state(run, state, expected=OPEN_STATES)
            except InvalidStateTransition:  # cancelled while it awaited its retry: it is
                if (await self._store.read_flow_run(run)).state.type != StateType.CANCELLED:
                    raise

        return cancelled

    def _completed(self, state: State, fields: dict[str, Any]) -> Callable[[UUID], Awaitable[Any]]:
        """COMPLETED; one asked to cancel first says the cancel came too late, as a top-level
        run does."""
        message = "; ".join(filter(None, (LATE_CANCEL, state.message)))
        late = state.model_copy(update={"message": message})
        running = ACTIVE_STATES - {StateType.CANCELLING}

        async def completed(run: UUID) -> None:
            try:
                await self._store.set_state(run, state, expected=running, **fields)
            except InvalidStateTransition:
                await self._store.set_state(run, late, expected=[StateType.CANCELLING], **fields)

        return completed

    def _pending(self, parent: FlowRun) -> list[asyncio.Task[None]]:
        children = self._children.get(parent.id, {}).values()
        writes = [child.last or child.created for child in children]
        return [write for write in writes if not write.done()]

    def _set(
        self, state: State, expected: Collection[StateType], fields: dict[str, Any]
    ) -> Callable[[UUID], Awaitable[Any]]:
        return lambda run: self._store.set_state(run, state, expected=expected, **fields)

    def _then(
        self,
        parent: FlowRun,
        child_id: str,
        write: Callable[[UUID], Awaitable[Any]],
        after: Collection[asyncio.Task[None]] = (),
    ) -> None:
        """Queue a write of a child run after its earlier ones (and ``after``)."""
        child = self._child(parent, child_id)
        if child is None:
            logger.warning("Flow run %s told of an unknown subflow run %s", parent.name, child_id)
            return
        previous = {child.last or child.created, *after}
        written = self._written(child.name, write(child.id), previous)
        child.last = asyncio.get_running_loop().create_task(written)

    async def _written(
        self,
        name: str,
        write: Awaitable[Any],
        previous: Collection[asyncio.Task[None]] = (),
    ) -> None:
        for task in previous:
            await task  # never raises: each write logs its own failure
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

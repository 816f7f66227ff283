"""Watching a run from the webserver: waiting for its end, and following its logs as SSE.

Both read the store, so they work for runs of any runner sharing the database,
and both give up early when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

from headrace.flow_runs import FlowRun, LogRecord
from headrace.store import AsyncStore
from headrace.store.records import MAX_PAGE

FIRST_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.25
LOG_POLL_SECONDS = 0.25
MAX_WAIT_SECONDS = 300.0
"""Longest ``?wait=`` a trigger route accepts."""
SHUTTING_DOWN = "The webserver is shutting down"


async def wait_for_end(
    store: AsyncStore, flow_run_id: UUID, seconds: float, stop: Callable[[], bool]
) -> FlowRun:
    """The run once it has ended, or as it stands after ``seconds`` (or at shutdown)."""
    deadline = time.monotonic() + min(seconds, MAX_WAIT_SECONDS)
    delay = FIRST_POLL_SECONDS
    while True:
        run = await store.read_flow_run(flow_run_id)
        left = deadline - time.monotonic()
        if run.state.is_terminal or left <= 0 or stop():
            return run
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 1.5, MAX_POLL_SECONDS)


def log_json(line: LogRecord) -> dict[str, Any]:
    """A log line as the API returns it."""
    return {
        "id": line.id,
        "flow_run_id": str(line.flow_run_id),
        "level": line.level,
        "level_name": line.level_name,
        "message": line.message,
        "timestamp": line.timestamp.isoformat(),
    }


def sse_event(data: Any, *, event: str | None = None, event_id: int | None = None) -> bytes:
    """One Server-Sent Event; ``data`` is JSON on a single line."""
    head = ""
    if event is not None:
        head += f"event: {event}\n"
    if event_id is not None:
        head += f"id: {event_id}\n"
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def follow_logs(
    store: AsyncStore, flow_run_id: UUID, after_id: int, stop: Callable[[], bool]
) -> AsyncIterator[bytes]:
    """Every log line after ``after_id`` as it is written, then an ``end`` event.

    The stream ends once the run has ended and every line written before its
    end has been sent (the runner stores a run's lines before its final state).
    """
    last = after_id
    while True:
        lines = await store.read_logs(flow_run_id, after_id=last)
        for line in lines:
            last = line.id
            yield sse_event(log_json(line), event_id=line.id)
        if len(lines) >= MAX_PAGE:
            continue
        run = await store.read_flow_run(flow_run_id)
        if run.state.is_terminal:
            while True:
                rest = await store.read_logs(flow_run_id, after_id=last)
                for line in rest:
                    last = line.id
                    yield sse_event(log_json(line), event_id=line.id)
                if len(rest) < MAX_PAGE:
                    break
            yield sse_event({"state": run.state.model_dump(mode="json")}, event="end")
            return
        if stop():
            yield sse_event({"state": None, "reason": SHUTTING_DOWN}, event="end")
            return
        await asyncio.sleep(LOG_POLL_SECONDS)

"""Waiting helpers: every wait has a deadline, and none sleeps past its condition."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from pathlib import Path
from typing import TypeVar
from uuid import UUID

from headrace.flow_runs import FlowRun
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import TERMINAL_STATES, StateType
from headrace.store import AsyncStore

T = TypeVar("T")

POLL_SECONDS = 0.02


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    timeout: float = 20,
    what: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(POLL_SECONDS)


async def wait_for_state(
    store: AsyncStore,
    flow_run_id: UUID,
    states: Collection[StateType] = TERMINAL_STATES,
    *,
    timeout: float = 20,
) -> FlowRun:
    return await eventually(
        lambda: store.read_flow_run(flow_run_id),
        lambda run: run.state.type in states,
        timeout=timeout,
        what=f"flow run {flow_run_id} to reach {sorted(states)}",
    )


def make_runner(settings: Settings, **options: object) -> Runner:
    defaults: dict[str, object] = {
        "query_seconds": 0.2,
        "handle_signals": False,
        "kill_grace_seconds": 1.0,
    }
    return Runner(settings=settings, **{**defaults, **options})  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(runner: Runner) -> AsyncIterator[Runner]:
    """Run ``runner.start()`` in the background for the duration of the block."""
    task = asyncio.create_task(runner.start())
    try:
        await eventually(
            lambda: _ready(runner, task), bool, timeout=20, what="the runner to start its loops"
        )
        yield runner
    finally:
        await runner.stop()
        await asyncio.wait_for(task, timeout=60)


async def _ready(runner: Runner, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return runner.is_serving


async def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

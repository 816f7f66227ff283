"""``run_deployment``: start a run of a deployment from Python, and wait for it to end.

It works from any process that can reach the database: a script, a notebook,
or a flow's body (there the new run is linked to the calling run with
``parent_flow_run_id``, and the run's process reaches its runner's database).
The run is executed by whichever runner serves the deployment, on this host or
another. A run's end is not announced by the store's change feed (it tells of
runs queued and cancelled), so the wait reads the run, a little less often the
longer it lasts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar
from uuid import UUID

from headrace import runtime
from headrace.client import HeadraceClient, get_client
from headrace.flow_runs import FlowRun

T = TypeVar("T")

FIRST_READ_SECONDS = 0.05
LONGEST_READ_INTERVAL_SECONDS = 1.0


def run_deployment(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    timeout: float | None = None,
    idempotency_key: str | None = None,
) -> FlowRun:
    """Create a run of deployment ``name`` (``"flow-name/deployment-name"`` or an id) and wait.

    Waits until the run ends (``timeout=None``), at most ``timeout`` seconds (then
    returns the run as it is then), or not at all (``timeout=0``). Returns the run as
    last read. An unknown deployment raises ``ObjectNotFound`` naming it.
    """
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or a number >= 0, got {timeout!r}")
    work = _run_deployment(name, parameters, timeout, idempotency_key)
    return _run_to_end(work)


def _run_to_end(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end: here, or in a thread of its own if this thread runs an event
    loop (an async flow calling ``run_deployment``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(work)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(work))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run, name="headrace-run-deployment")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]


async def _run_deployment(
    name: str, parameters: dict[str, Any] | None, wait_seconds: float | None, key: str | None
) -> FlowRun:
    async with get_client() as client:  # the process's store: opened once, kept open
        deployment = await client.read_deployment_by_ref(name)
        parent = runtime.flow_run.id
        run = await client.create_flow_run_from_deployment(
            deployment.id,
            parameters,
            idempotency_key=key,
            parent_flow_run_id=None if parent is None else UUID(parent),
        )
        return await wait_for_end(client, run, wait_seconds)


async def wait_for_end(client: HeadraceClient, run: FlowRun, wait_seconds: float | None) -> FlowRun:
    """``run`` as last read: once it ended, or after ``wait_seconds`` (None: no limit)."""
    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    interval = FIRST_READ_SECONDS
    while not run.state.type.is_terminal:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        await asyncio.sleep(interval if left is None else min(interval, left))
        interval = min(interval * 1.5, LONGEST_READ_INTERVAL_SECONDS)
        run = await client.read_flow_run(run.id)
    return run

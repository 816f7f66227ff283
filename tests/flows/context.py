"""Flows that report the run context they see, from their body, a thread and a program."""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

from headrace import flow, runtime
from headrace.runtime import flow_run as imported_early


def context_as_dict() -> dict[str, Any]:
    """The run context as JSON-friendly values (outside a run too)."""
    run = runtime.flow_run
    when = run.scheduled_start_time
    return {
        "id": run.id,
        "name": run.name,
        "run_count": run.run_count,
        "parameters": run.parameters,
        "deployment_id": run.deployment_id,
        "scheduled_start_time": None if when is None else when.isoformat(),
        "aware": None if when is None else when.utcoffset() is not None,
        "parent_flow_run_id": run.parent_flow_run_id,
    }


@flow
def report_context(day: str = "monday", count: int = 1) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: seen.append(context_as_dict()))
    thread.start()
    thread.join(10)
    here = context_as_dict()
    assert seen == [here], "a thread the flow started sees another context"
    assert imported_early.id == here["id"], "flow_run imported before the run sees another"
    return here


@flow
async def report_context_async() -> dict[str, Any]:
    return context_as_dict()


@flow
def report_context_on_schedule() -> dict[str, Any]:
    return context_as_dict()


@flow(retries=1)
def fails_first_attempt() -> int | None:
    if runtime.flow_run.run_count == 1:
        raise RuntimeError("the first attempt fails")
    return runtime.flow_run.run_count


@flow
def environment_of_a_program() -> list[str]:
    """What a program the run starts finds in its environment."""
    names = ["HEADRACE_FLOW_RUN_ID", "HEADRACE_FLOW_RUN_NAME", "HEADRACE_FLOW_RUN_COUNT"]
    code = f"import os; print('\\n'.join(os.environ[n] for n in {names!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()

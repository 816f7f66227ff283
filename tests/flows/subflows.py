"""Flows that call flows: subflows (child runs in the caller's process) and run_deployment."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from headrace import flow, run_deployment, runtime

logger = logging.getLogger("tests.subflows")


def seen() -> dict[str, Any]:
    run = runtime.flow_run
    return {
        "id": run.id,
        "name": run.name,
        "parent_flow_run_id": run.parent_flow_run_id,
        "run_count": run.run_count,
    }


@flow
def double(x: int) -> dict[str, Any]:
    logger.info("doubling %d", x)
    print(f"printed while doubling {x}")
    print("no newline at the end", end="")
    return {"value": 2 * x, "context": seen()}


@flow
def parent(x: int = 3) -> dict[str, Any]:
    before = seen()
    child = double(x)
    after = seen()
    logger.info("the child returned %d", child["value"])
    print("printed by the parent")
    return {"before": before, "child": child, "after": after}


class Refused(RuntimeError):
    pass


@flow
def fails(reason: str) -> None:
    raise Refused(reason)


@flow
def parent_of_failure() -> str:
    try:
        fails("no thanks")
    except Refused as exc:
        return f"caught {exc}"
    return "not raised"


@flow
def parent_fails_through_child() -> None:
    fails("passed on")


@flow(retries=2)
def flaky() -> int:
    count = runtime.flow_run.run_count or 0
    if count < 3:
        raise ValueError(f"attempt {count} fails")
    return count


@flow
def parent_of_flaky() -> int:
    return flaky()


@flow
async def async_double(x: int) -> dict[str, Any]:
    return {"value": 2 * x, "context": seen()}


@flow
async def async_parent(x: int = 4) -> dict[str, Any]:
    child = await async_double(x)
    return {"child": child, "after": seen()}


@dataclass
class Payload:
    day: date
    amount: Decimal


@flow
def large_result(items: int = 20000) -> dict[str, Any]:
    return {"rows": [{"n": n, "text": f"row {n}"} for n in range(items)]}


@flow
def typed_result() -> Payload:
    return Payload(date(2026, 12, 7), Decimal("1.50"))


@flow
def unencodable_result() -> object:
    return object()


@flow
def quick(x: int = 1) -> int:
    return x + 1


@flow
def slow(seconds: float = 30) -> str:
    import time

    time.sleep(seconds)
    return "slept"


@flow
def calls_deployment(name: str, timeout: float | None = None) -> dict[str, Any]:
    run = run_deployment(name, {"x": 41}, timeout=timeout)
    return {"id": str(run.id), "state": run.state.type.value, "result": run.result}


UNKNOWN_RUN = "00000000-0000-4000-8000-000000000000"


@flow(retries=2)
def marks_then_waits(marker: str) -> None:
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    import time

    time.sleep(60)


@flow
def parent_of_a_long_child(marker: str) -> None:
    marks_then_waits(marker)


@flow(timeout_seconds=1)
def parent_timing_out(marker: str) -> None:
    marks_then_waits(marker)


@flow(timeout_seconds=0.5)
def sleeps_too_long() -> None:
    import time

    time.sleep(30)


@flow
def parent_of_a_slow_child() -> str:
    try:
        sleeps_too_long()
    except TimeoutError as exc:
        return str(exc)
    return "not timed out"


@flow(retries=1, retry_delay_seconds=60)
def fails_then_awaits_a_retry(marker: str) -> None:
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    raise ValueError("the first attempt fails")


@flow
def parent_of_a_child_awaiting_a_retry(marker: str) -> None:
    fails_then_awaits_a_retry(marker)


def _mark_and_wait(marker: str) -> None:
    import time
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    time.sleep(60)


@flow
def waits_to_be_cancelled(marker: str) -> str:
    _mark_and_wait(marker)
    return "never cancelled"


@flow
def parent_of_a_cancelled_child(marker: str) -> str:
    from headrace.exceptions import FlowRunCancelled

    try:
        waits_to_be_cancelled(marker)
    except FlowRunCancelled as exc:
        return f"caught {type(exc).__name__}: {exc}"
    return "not cancelled"


@flow
def parent_passes_on_a_cancel(marker: str) -> str:
    return waits_to_be_cancelled(marker)


@flow
def swallows_its_cancel(marker: str) -> str:
    try:
        _mark_and_wait(marker)
    except Exception as exc:
        return f"swallowed {type(exc).__name__}"
    return "never cancelled"


@flow
def parent_of_a_child_that_swallows_its_cancel(marker: str) -> str:
    from headrace.exceptions import FlowRunCancelled

    try:
        swallows_its_cancel(marker)
    except FlowRunCancelled:
        return "caught"
    return "not cancelled"


@flow
def middle(marker: str) -> str:
    return waits_to_be_cancelled(marker)


@flow
def parent_of_a_grandchild(marker: str) -> str:
    from headrace.exceptions import FlowRunCancelled

    try:
        middle(marker)
    except FlowRunCancelled as exc:
        return f"caught {exc}"
    return "not cancelled"


@flow
async def async_waits_to_be_cancelled(marker: str) -> str:
    import asyncio
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    await asyncio.sleep(60)
    return "never cancelled"


@flow
async def async_parent_of_a_cancelled_child(marker: str) -> str:
    from headrace.exceptions import FlowRunCancelled

    try:
        await async_waits_to_be_cancelled(marker)
    except FlowRunCancelled as exc:
        return f"caught {type(exc).__name__}: {exc}"
    return "not cancelled"


@flow
def parent_of_a_cancelled_retry(marker: str) -> str:
    from headrace.exceptions import FlowRunCancelled

    try:
        fails_then_awaits_a_retry(marker)
    except FlowRunCancelled as exc:
        return f"caught {exc}"
    return "not cancelled"


@flow
def ticks_until_cancelled(marker: str) -> str:
    import time
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    for _ in range(1200):  # Python runs between the ticks: a cancel is raised there
        time.sleep(0.05)
    return "never cancelled"


@flow
def parent_of_a_child_in_a_thread(marker: str) -> str:
    from concurrent.futures import ThreadPoolExecutor

    from headrace.exceptions import FlowRunCancelled

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(ticks_until_cancelled, marker)
        try:
            future.result()
        except FlowRunCancelled as exc:
            return f"caught {exc}"
    return "not cancelled"


@flow
async def async_middle(marker: str) -> str:
    return await async_waits_to_be_cancelled(marker)


@flow
async def async_parent_of_a_grandchild(marker: str) -> str:
    from headrace.exceptions import FlowRunCancelled

    try:
        await async_middle(marker)
    except FlowRunCancelled as exc:
        return f"caught {exc}"
    return "not cancelled"


@flow
def waits_for_release(marker: str, release: str) -> str:
    import time
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    for _ in range(600):
        if Path(release).exists():
            return "released"
        time.sleep(0.05)
    return "never released"


@flow
def middle_of_a_released_grandchild(marker: str, release: str) -> str:
    return waits_for_release(marker, release)


@flow
def parent_of_a_released_grandchild(marker: str, release: str) -> str:
    return middle_of_a_released_grandchild(marker, release)


@flow
def logs_large_lines_until_cancelled(marker: str) -> str:
    from pathlib import Path

    Path(marker).write_text(runtime.flow_run.id or "")
    line = "z" * 100_000  # each one is sent in more than one write
    for _ in range(1_000_000):  # nearly all its time goes to sending them
        logger.info(line)
    return "never cancelled"


@flow
def parent_of_a_loud_child_in_a_thread(marker: str) -> str:
    from concurrent.futures import ThreadPoolExecutor

    from headrace.exceptions import FlowRunCancelled

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(logs_large_lines_until_cancelled, marker)
        try:
            future.result()
        except FlowRunCancelled as exc:
            logger.info("the parent goes on after the cancel")
            return f"caught {exc}"
    return "not cancelled"

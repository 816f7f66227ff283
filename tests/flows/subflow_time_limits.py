"""Flows that call sync subflows with a time limit: in the main thread, in a task submitted
to a thread, and nested."""

from __future__ import annotations

import time
from collections.abc import Callable

from headrace import flow, task


def ticks(seconds: float) -> None:
    """Sleep in short ticks: Python runs between them, so a time limit is raised there."""
    for _ in range(round(seconds / 0.05)):
        time.sleep(0.05)


@flow(timeout_seconds=1)
def ticks_past_its_limit() -> str:
    ticks(60)
    return "not timed out"


@flow(timeout_seconds=0.5, retries=1, retry_delay_seconds=0)
def ticks_past_its_limit_twice() -> str:
    ticks(60)
    return "not timed out"


@flow(timeout_seconds=1)  # a trivial body, with room for a loaded machine
def returns_in_time(x: int) -> int:
    return x * 2


@flow(timeout_seconds=30)
def calls_a_child_with_a_shorter_limit() -> str:
    try:
        ticks_past_its_limit()
    except TimeoutError as exc:
        return f"caught {type(exc).__name__}: {exc}"
    return "not timed out"


@flow(timeout_seconds=30, retries=2)
def ticks_within_its_own_limit() -> str:
    ticks(60)
    return "not timed out"


@flow(timeout_seconds=1)
def calls_a_child_with_a_longer_limit() -> str:
    return ticks_within_its_own_limit()


def caught(call: Callable[[], object]) -> str:
    try:
        return str(call())
    except TimeoutError as exc:
        return f"caught {type(exc).__name__}: {exc}"


CALLS: dict[str, Callable[[], object]] = {
    "past": ticks_past_its_limit,
    "past twice": ticks_past_its_limit_twice,
    "in time": lambda: returns_in_time(21),
    "shorter inside": calls_a_child_with_a_shorter_limit,
    "longer inside": calls_a_child_with_a_longer_limit,
}


def called(name: str) -> str:
    result = caught(CALLS[name])
    ticks(1.5)  # a limit that ended with its call never fires later
    return result


@task
def in_a_thread(name: str) -> str:
    return called(name)


@flow
def calls_from_a_thread(name: str) -> str:
    return in_a_thread.submit(name).result()


@flow
def calls_from_the_main_thread(name: str) -> str:
    return called(name)

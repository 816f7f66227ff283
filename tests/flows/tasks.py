"""Flows that call tasks: retries, failures, submit and map, the cache, many calls."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from headrace import flow, runtime, task

logger = logging.getLogger(__name__)


def _bump(path: str) -> int:
    """Count calls in a file: a task's attempts, across processes."""
    counter = Path(path)
    count = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(count))
    return count


@task(retries=2, retry_delay_seconds=[0.01, 0.02])
def flaky(counter: str) -> int:
    """Fails its first two attempts."""
    attempt = _bump(counter)
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt} failed")
    logger.info("flaky worked on attempt %d", attempt)
    return attempt


@task
def double(x: int) -> int:
    return 2 * x


@task
async def triple(x: int) -> int:
    await asyncio.sleep(0.01)
    return 3 * x


@task
def broken(why: str) -> None:
    raise ValueError(why)


@flow
def with_tasks(counter: str) -> dict[str, Any]:
    """Retries, submit and map of a sync and an async task, in one run."""
    doubled = [f.result() for f in double.map([1, 2, 3])]
    tripled = [f.result() for f in triple.map([1, 2])]
    return {"flaky": flaky(counter), "doubled": doubled, "tripled": tripled}


@flow
async def async_with_tasks() -> list[int]:
    """An async flow: async tasks awaited and submitted on its loop, a sync one on a thread."""
    first = await triple(1)
    futures = triple.map([2, 3])
    rest = [await f for f in futures]
    return [first, *rest, double.submit(4).result()]


@flow
def task_fails() -> None:
    """A task that raises fails the flow that does not catch it."""
    double(1)
    broken("no good")


def by_x(context: Any, parameters: dict[str, Any]) -> str:
    return str(parameters["x"])


@task(cache_key_fn=by_x)
def costly(x: int, counter: str) -> int:
    _bump(counter)
    return x * 10


# Long enough for two runs back to back on a loaded machine, short enough to wait out.
@task(cache_key_fn=by_x, cache_expiration=timedelta(seconds=6))
def short_lived(x: int, counter: str) -> int:
    _bump(counter)
    return x * 100


@flow
def cached(x: int, counter: str) -> int:
    return costly(x, counter) + costly(x, counter)


@flow
def cached_briefly(x: int, counter: str) -> int:
    return short_lived(x, counter)


@flow(retries=1)
def cached_then_fails(x: int, counter: str) -> int:
    """The first attempt caches its task's result and fails; the retry reuses the result."""
    value = costly(x, counter)
    if runtime.flow_run.run_count == 1:
        raise RuntimeError("the first attempt fails after its task")
    return value


@flow
def many_tasks(n: int = 1000) -> int:
    return sum(double(i) for i in range(n))


@flow(retries=3, retry_delay_seconds=[0.2, 0.4])
def always_fails() -> None:
    raise RuntimeError(f"attempt {runtime.flow_run.run_count}")


def only_connection_errors(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


@flow(retries=3, retry_condition_fn=only_connection_errors)
def fails_for_good() -> None:
    raise ValueError("bad input: retrying will not help")


@task
def sleeps(seconds: float) -> None:
    import time

    time.sleep(seconds)


@flow
def leaves_a_task_running() -> str:
    """Returns without waiting for the task it submitted."""
    sleeps.submit(60)
    return "done"


@task
def marks_then_sleeps(marker: str) -> None:
    Path(marker).write_text(runtime.flow_run.id or "")
    import time

    time.sleep(60)


@flow
def waits_on_a_sleeping_task(marker: str) -> None:
    """Its task is still RUNNING when its runner is killed."""
    marks_then_sleeps.submit(marker).result()


@flow
def child_calls_a_task(x: int) -> int:
    return double(x)


@flow
def parent_and_child_call_tasks(x: int = 1) -> int:
    """One task run in the parent's body, one in its subflow's."""
    return double(child_calls_a_task(x))

"""The flow ``task_overhead.py`` runs: it times plain calls against task calls, in its run."""

from __future__ import annotations

import statistics
import time

from headrace import flow, task


def increment(x: int) -> int:
    return x + 1


increment_task = task(increment)


def _seconds(fn: object, calls: int) -> float:
    began = time.perf_counter()
    for i in range(calls):
        fn(i)  # type: ignore[operator]
    return time.perf_counter() - began


@flow
def task_overhead(calls: int = 2000, rounds: int = 3) -> dict[str, float]:
    """Microseconds a task call costs over a plain call, inside this run (median of rounds)."""
    plain = [_seconds(increment, calls) for _ in range(rounds)]
    tasks = [_seconds(increment_task, calls) for _ in range(rounds)]
    per_call = [(t - p) / calls * 1e6 for t, p in zip(tasks, plain, strict=True)]
    return {
        "calls": calls * rounds,
        "plain_us": statistics.median(plain) / calls * 1e6,
        "task_us": statistics.median(tasks) / calls * 1e6,
        "overhead_us": statistics.median(per_call),
    }

"""More flows for child-process tests: a large result, a slow first attempt, retries."""

from __future__ import annotations

import logging
import os
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from headrace import flow, runtime


@flow
def big_result(size: int = 200_000) -> str:
    return "x" * size


@flow
def big_log_and_result(size: int = 40_000) -> str:
    """A log record and a result each far larger than one write to the events pipe."""
    logging.getLogger(__name__).warning("y" * size)
    return "x" * size


@flow
def add_more(x: int, y: int = 1) -> int:
    """Same parameters as ``basic.add``, a different answer: shows which entrypoint ran."""
    return x + y + 100


@flow
def slow_first_time(marker: str, seconds: float = 60) -> int:
    """Sleeps on its first execution only; returns how many times it has started."""
    path = Path(marker)
    starts = len(path.read_text()) + 1 if path.exists() else 1
    path.write_text("x" * starts)
    if starts == 1:
        time.sleep(seconds)
    return starts


@flow(retries=1)
def retried_once(x: int = 1) -> int:
    return x


@flow
def awkward_text() -> dict[str, object]:
    """Values no store can keep as they are: NaN, infinity, an unpaired surrogate."""
    logging.getLogger(__name__).warning("lone \ud800 surrogate")
    print("printed \ud800 surrogate")
    return {"mean": float("nan"), "top": float("inf"), "text": "a\udc00b", "ok": "\U0001f600"}


@flow
def raises_awkward_text() -> None:
    raise ValueError("bad \ud800 input")


@flow
def every(period: timedelta, since: date | None = None) -> float:
    """Parameters whose JSON schema says less than their validation checks."""
    return period.total_seconds()


@flow
def finishes_on_sigterm(marker: str) -> str:
    """Counts its starts in ``marker``, then waits for SIGTERM and returns cleanly."""
    import signal
    import threading

    with Path(marker).open("a") as starts:
        starts.write("start\n")
    asked = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: asked.set())
    asked.wait(30)
    return "finished after SIGTERM" if asked.is_set() else "never asked"


@flow
def echo(value: Any) -> Any:
    return value


@flow(retries=1)
def touch_retried(
    t0: float, out: str, sleep: float = 0.0, retry_sleep: float | None = None
) -> float:
    """``basic.touch`` with one retry: "start"/"end" markers, one line each.

    A retry sleeps ``retry_sleep`` when given: a first attempt that must still be running
    when the test stops it can last far longer than any machine's delay, and its retry
    need not.
    """
    start = time.time()
    with open(out, "a") as handle:
        handle.write(f"start {t0} {start}\n")
    retry = (runtime.flow_run.run_count or 1) > 1
    time.sleep(retry_sleep if retry and retry_sleep is not None else sleep)
    with open(out, "a") as handle:
        handle.write(f"end {t0} {time.time()}\n")
    return start


@flow
def touch_until(t0: float, out: str, gate: str, seconds: float = 60) -> float:
    """``basic.touch`` whose body lasts until the file ``gate`` exists (``seconds`` at most).

    The test creates ``gate`` once it has done what must happen while the body runs: a
    fixed sleep would end the body early on a machine slow to do that.
    """
    start = time.time()
    with open(out, "a") as handle:
        handle.write(f"start {t0} {start}\n")
    deadline = time.monotonic() + seconds
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(out, "a") as handle:
        handle.write(f"end {t0} {time.time()}\n")
    return start


@flow(retries=1, retry_delay_seconds=0)
def ticking(out: str, seconds: float) -> None:
    """Appends "<pid> <time>" every 20 ms while its body runs: when each attempt ran."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        with open(out, "a") as handle:
            handle.write(f"{os.getpid()} {time.time()}\n")
        time.sleep(0.02)

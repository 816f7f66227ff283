"""Flows the tests run in real child processes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from headrace import flow


@flow
def add(x: int, y: int = 1) -> int:
    print(f"adding {x} and {y}")
    logging.getLogger("user").warning("about to return")
    return x + y


@flow
async def async_add(x: int, y: int = 1) -> int:
    await asyncio.sleep(0)
    return x + y


@flow
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@flow
def exit_hard(code: int = 3) -> None:
    print("exiting hard", flush=True)
    os._exit(code)


@flow
def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@flow
def sleepy(seconds: float = 30) -> None:
    time.sleep(seconds)


@flow(timeout_seconds=0.5)
def too_slow(seconds: float = 30) -> None:
    time.sleep(seconds)


@flow(retries=2, retry_delay_seconds=0)
def flaky(marker: str) -> int:
    """Fails until its third attempt."""
    path = Path(marker)
    with path.open("a") as handle:
        handle.write("x")
    attempts = len(path.read_text())
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@flow
def touch(t0: float, out: str, sleep: float = 0.0) -> float:
    """Appends "<t0> <start>" when it starts and "<t0> <start> <end>" ... when it ends."""
    start = time.time()
    with open(out, "a") as handle:
        handle.write(f"start {t0} {start}\n")
    time.sleep(sleep)
    with open(out, "a") as handle:
        handle.write(f"end {t0} {time.time()}\n")
    return start


@flow
def with_grandchild(pidfile: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    Path(pidfile).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(120)


@flow
def returns_object() -> object:
    return object()


not_a_flow = 42


@flow
def new_imports() -> list[str]:
    """Modules this run imported that its fork server had not."""
    from headrace.process import child

    return sorted(set(sys.modules) - child.preloaded_modules)


@flow
async def new_imports_async() -> list[str]:
    """Modules this run of an async flow imported that its fork server had not."""
    await asyncio.sleep(0)
    return new_imports.fn()


@flow
def cpus() -> list[int]:
    """The CPUs this run may use."""
    return sorted(os.sched_getaffinity(0))

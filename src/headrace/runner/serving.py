"""Interpreter settings for a process whose main job is serving flows.

Applied only by the entry points that own their process (``headrace serve``,
``serve()``), never on import:

- The runner's event loop and its store thread share the GIL. With Python's
  default 5 ms switch interval, a finished database write can wait that long
  to hand its result back to the loop; 0.2 ms keeps a trigger's answer quick
  at the cost of a little throughput.
- Both threads stay on one CPU. Python runs one of them at a time anyway, and
  when the kernel spreads them over two CPUs every hand-off between them is a
  wake-up across CPUs: on 2 cores, six benchmark runs gave a median trigger
  under load of 1.6-3.4 ms spread and 0.9-2.7 ms held together. Runs are not
  held to that CPU: the fork server takes back every CPU the process was
  allowed (``RUN_CPUS_VARIABLE``). ``HEADRACE_RUNNER_PIN_CPU=false`` turns
  this off.
- uvloop, when installed (the ``fast`` extra), runs the loop.
- A database that is behind is migrated in a child process, so Alembic does
  not stay in memory for the life of the process.
- The heap is frozen once the runner is up: a full garbage collection of
  everything imported at start (web stack, SQLAlchemy, pydantic, the flows)
  takes tens of milliseconds and stalls every request in flight, and those
  objects live as long as the process anyway.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from headrace.process.protocol import RUN_CPUS_VARIABLE

T = TypeVar("T")

SWITCH_INTERVAL_SECONDS = 0.0002

_serving = False


def tune_for_serving(*, pin_cpu: bool = True) -> None:
    global _serving
    from headrace.store.migrate import migrate_in_child_process

    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    if pin_cpu:
        pin_to_one_cpu()
    migrate_in_child_process()  # Alembic would stay in memory as long as we serve
    _serving = True


def pin_to_one_cpu() -> None:
    """Hold this process (and the threads it starts) to one of the CPUs it may use.

    Call it before starting threads: they inherit it. Children are told, in
    ``RUN_CPUS_VARIABLE``, which CPUs they may take back.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return
    os.environ[RUN_CPUS_VARIABLE] = json.dumps(allowed)
    os.sched_setaffinity(0, {allowed[-1]})  # the last: the first tends to take the interrupts


def settle_heap() -> None:
    """Called once the runner is up: in a serving process, freeze what start-up made."""
    if _serving:
        gc.collect()
        gc.freeze()


def run_serving(main: Coroutine[Any, Any, T], *, pin_cpu: bool = True) -> T:
    """Run a serving process's main coroutine: tuned, on uvloop when it is installed."""
    tune_for_serving(pin_cpu=pin_cpu)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

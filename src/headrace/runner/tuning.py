"""Interpreter settings for a process whose main job is serving flows.

The runner's event loop and its store thread share the GIL. With Python's
default 5 ms switch interval, a finished database write can wait that long to
hand its result back to the loop; a much shorter interval keeps a trigger's
answer at the cost of a little throughput. uvloop, when installed (the
``fast`` extra), runs the loop. Applied only by the entry points that own their
process (``headrace serve``, ``serve()``), never on import.

Such a process migrates a database that is behind in a child process, and
freezes its heap once it is up: a full garbage collection
of everything imported at start (web stack, SQLAlchemy, pydantic, the flows)
takes tens of milliseconds and stalls every request in flight, and those
objects live as long as the process anyway.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

SWITCH_INTERVAL_SECONDS = 0.0002


_serving = False


def tune_for_serving() -> None:
    global _serving
    from headrace.store.migrate import migrate_in_child_process

    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    migrate_in_child_process()  # Alembic would stay in memory as long as we serve
    _serving = True


def settle_heap() -> None:
    """Called once the runner is up: in a serving process, freeze what start-up made."""
    if _serving:
        gc.collect()
        gc.freeze()


def run_serving(main: Coroutine[Any, Any, T]) -> T:
    """Run a serving process's main coroutine: tuned, on uvloop when it is installed."""
    tune_for_serving()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)

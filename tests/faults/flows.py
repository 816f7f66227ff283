"""The flows the fault tier serves: each body leaves marker lines the invariants read.

A body appends ``start RUN ATTEMPT PID TIME FLOW`` when it starts, ``tick ...`` every
``TICK_SECONDS`` while it sleeps, and ``end ...`` once it has finished, so the
file tells when each attempt of each run executed, on this host.
"""

from __future__ import annotations

import os
import time

from headrace import flow, runtime

TICK_SECONDS = 0.05


def _mark(out: str, kind: str, flow_name: str) -> None:
    run = runtime.flow_run
    line = f"{kind} {run.id} {run.run_count} {os.getpid()} {time.time()} {flow_name}\n"
    with open(out, "a") as handle:
        handle.write(line)


def _body(out: str, seconds: float, flow_name: str) -> float:
    _mark(out, "start", flow_name)
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(TICK_SECONDS, left))
        _mark(out, "tick", flow_name)
    _mark(out, "end", flow_name)
    return seconds


@flow
def marked(out: str, seconds: float = 0.2) -> float:
    """No retries: a lost attempt ends the run ``CRASHED``."""
    return _body(out, seconds, "marked")


@flow(retries=2, retry_delay_seconds=0)
def marked_retried(out: str, seconds: float = 0.2) -> float:
    """Two retries: a lost attempt runs again."""
    return _body(out, seconds, "marked-retried")

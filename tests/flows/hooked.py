"""Flows with state hooks: each hook appends to ``<marker>.<hook>`` a line with the state and
the pid of the process that called it."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from headrace import flow
from headrace.runtime import FlowRunContext
from headrace.states import State


def _writer(kind: str) -> Any:
    def hook(flow: Any, flow_run: FlowRunContext, state: State) -> None:
        marker = flow_run.parameters["marker"]
        line = f"{state.type.value} {os.getpid()} {flow.name} {flow_run.name}\n"
        with Path(f"{marker}.{kind}").open("a") as handle:
            handle.write(line)

    hook.__qualname__ = f"write_{kind}"
    return hook


def broken_hook(flow: Any, flow_run: FlowRunContext, state: State) -> None:
    raise RuntimeError("the hook broke")


HOOKS: dict[str, Any] = {
    "on_completion": [broken_hook, _writer("completion")],
    "on_failure": [broken_hook, _writer("failure")],
    "on_crashed": [broken_hook, _writer("crashed")],
    "on_cancellation": [broken_hook, _writer("cancellation")],
}


@flow(**HOOKS)
def succeeds(marker: str) -> int:
    return 42


@flow(**HOOKS)
def fails(marker: str) -> None:
    raise ValueError("the body failed")


@flow(**HOOKS)
def sleeps(marker: str, seconds: float = 30) -> None:
    Path(f"{marker}.started").write_text(str(os.getpid()))
    time.sleep(seconds)


@flow(**HOOKS)
def dies(marker: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@flow(retries=1, retry_delay_seconds=0, **HOOKS)
def fails_twice(marker: str) -> None:
    with Path(f"{marker}.attempts").open("a") as handle:
        handle.write("x")
    raise ValueError("the body failed")


@flow(timeout_seconds=0.5, **HOOKS)
def times_out(marker: str) -> None:
    time.sleep(30)


def loud_hook(flow: Any, flow_run: FlowRunContext, state: State) -> None:
    print(f"the hook saw {state.type.value}")
    print("and warns on stderr", file=sys.stderr)


@flow(on_crashed=[loud_hook])
def dies_loudly() -> None:
    os.kill(os.getpid(), signal.SIGKILL)

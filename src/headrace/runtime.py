"""The run context: what a flow's body can learn about the run executing it.

``from headrace import runtime`` then ``runtime.flow_run.id``, ``.name``,
``.run_count``, ``.parameters``, ``.deployment_id``, ``.scheduled_start_time``
and ``.parent_flow_run_id``. A run's process executes exactly one run, so the
context is set once in that process, before the body starts: the flow, any
thread it starts and any event loop it runs all see the same values. Outside
a run every attribute is None and ``parameters`` is ``{}``. While a subflow
runs in that process, the code it calls sees the subflow's run instead
(``entered_subflow_run``), and the caller's again once it returns.

The run's process also exports ``HEADRACE_FLOW_RUN_ID``,
``HEADRACE_FLOW_RUN_NAME`` and ``HEADRACE_FLOW_RUN_COUNT`` to the programs it
starts (``ENVIRONMENT_VARIABLES``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FLOW_RUN_ID_VARIABLE = "HEADRACE_FLOW_RUN_ID"
FLOW_RUN_NAME_VARIABLE = "HEADRACE_FLOW_RUN_NAME"
FLOW_RUN_COUNT_VARIABLE = "HEADRACE_FLOW_RUN_COUNT"


@dataclass(frozen=True)
class FlowRunContext:
    """The values of one run, as its process was given them."""

    id: str | None = None
    name: str | None = None
    run_count: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    deployment_id: str | None = None
    scheduled_start_time: datetime | None = None
    parent_flow_run_id: str | None = None


_OUTSIDE = FlowRunContext()
_current = _OUTSIDE
_subflow: ContextVar[FlowRunContext | None] = ContextVar("headrace_subflow_run", default=None)

SubflowCall = Callable[[Any, dict[str, Any]], Any]
"""How a run's process runs a flow called inside its run: ``(flow, arguments) -> result``."""
_subflow_call: SubflowCall | None = None


def _now() -> FlowRunContext:
    return _subflow.get() or _current


class FlowRunView:
    """Reads the current run's values, so ``from headrace.runtime import flow_run``
    at import time (before the run is entered) still sees them."""

    __slots__ = ()

    @property
    def id(self) -> str | None:
        """The run's id (a UUID's text)."""
        return _now().id

    @property
    def name(self) -> str | None:
        return _now().name

    @property
    def run_count(self) -> int | None:
        """This attempt of the run, from 1: a retry sees 2, and so on."""
        return _now().run_count

    @property
    def parameters(self) -> dict[str, Any]:
        """The run's parameters as stored (a copy: changing it changes nothing)."""
        return dict(_now().parameters)

    @property
    def deployment_id(self) -> str | None:
        return _now().deployment_id

    @property
    def scheduled_start_time(self) -> datetime | None:
        """When the run was due: a schedule's planned time, or when it was triggered."""
        return _now().scheduled_start_time

    @property
    def parent_flow_run_id(self) -> str | None:
        return _now().parent_flow_run_id

    def __repr__(self) -> str:
        return f"headrace.runtime.flow_run({_now()!r})"


flow_run = FlowRunView()
"""The run executing this code, or all None outside a run."""


def enter_flow_run(context: FlowRunContext) -> None:
    """Make ``context`` this process's run: called by headrace in a run's process,
    before the body starts, once."""
    global _current
    _current = context
    os.environ.update(environment_variables(context))


@contextmanager
def entered_subflow_run(context: FlowRunContext) -> Iterator[None]:
    """Within this, ``flow_run`` is the subflow's run (in this thread or task only)."""
    token = _subflow.set(context)
    try:
        yield
    finally:
        _subflow.reset(token)


def set_subflow_call(call: SubflowCall | None) -> None:
    """Called by headrace in a run's process: flows called inside the run go through ``call``."""
    global _subflow_call
    _subflow_call = call


def subflow_call() -> SubflowCall | None:
    """How to run a flow called now, or None outside a run's process (a plain call)."""
    return _subflow_call if _current.id is not None else None


def environment_variables(context: FlowRunContext) -> dict[str, str]:
    """What the programs a run starts find in their environment."""
    return {
        FLOW_RUN_ID_VARIABLE: context.id or "",
        FLOW_RUN_NAME_VARIABLE: context.name or "",
        FLOW_RUN_COUNT_VARIABLE: "" if context.run_count is None else str(context.run_count),
    }


__all__ = [
    "FlowRunContext",
    "FlowRunView",
    "enter_flow_run",
    "entered_subflow_run",
    "flow_run",
    "set_subflow_call",
    "subflow_call",
]

"""headrace: serve plain Python functions as flows; trigger, schedule, watch and cancel runs.

The runner, client and submission helpers are imported on first use, so
``import headrace`` (and every flow run's child process) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from headrace import runtime as runtime
from headrace._version import __version__ as __version__
from headrace.flows import Flow, flow
from headrace.retries import exponential_backoff
from headrace.tasks import Task, task

if TYPE_CHECKING:
    from headrace.client import get_client
    from headrace.deployment_runs import run_deployment
    from headrace.notifications import Notify
    from headrace.runner import Runner, serve
    from headrace.submission import submit_to_runner, wait_for_submitted_runs

__all__ = [
    "Flow",
    "Notify",
    "Runner",
    "Task",
    "exponential_backoff",
    "flow",
    "get_client",
    "run_deployment",
    "runtime",
    "serve",
    "submit_to_runner",
    "task",
    "wait_for_submitted_runs",
]

_LAZY = {
    "Notify": "headrace.notifications",
    "Runner": "headrace.runner",
    "serve": "headrace.runner",
    "get_client": "headrace.client",
    "run_deployment": "headrace.deployment_runs",
    "submit_to_runner": "headrace.submission",
    "wait_for_submitted_runs": "headrace.submission",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'headrace' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value

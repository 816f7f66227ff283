"""State hooks: a flow's own functions called once a run of it reaches a final state.

Each hook (a function, or an ``async def`` one) is called as
``hook(flow, flow_run, state)``: the ``Flow``, the run's ``FlowRunContext``
(what ``headrace.runtime.flow_run`` reads in the body) and the final ``State``.
A hook that raises is logged under its name and costs nothing else: the run's
state stays what it was and the next hooks still run.
Which process calls which hook is decided by who can: the run's process for
on_completion and on_failure after the body, the runner for the rest.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from headrace.runtime import FlowRunContext
    from headrace.states import State

Hook = Callable[[Any, "FlowRunContext", "State"], object]
HookKind = Literal["on_completion", "on_failure", "on_crashed", "on_cancellation"]
HOOK_KINDS: tuple[HookKind, ...] = ("on_completion", "on_failure", "on_crashed", "on_cancellation")

logger = logging.getLogger("headrace.hooks")


def check_hooks(kind: str, hooks: object) -> tuple[Hook, ...]:
    """A flow's hooks of one kind, as given (a list of callables), or a ValueError."""
    if hooks is None:
        return ()
    if callable(hooks):
        hooks = [hooks]
    if not isinstance(hooks, list | tuple):
        raise ValueError(f"{kind} must be a list of functions, got {type(hooks).__name__}")
    for hook in hooks:
        if not callable(hook):
            raise ValueError(f"{kind} must be a list of functions, and {hook!r} is not callable")
    return tuple(hooks)


def hook_name(hook: Hook) -> str:
    return str(getattr(hook, "__qualname__", None) or getattr(hook, "__name__", None) or hook)


def call_hooks(
    kind: HookKind,
    hooks: Sequence[Hook],
    flow: object,
    flow_run: FlowRunContext,
    state: State,
    report: Callable[[str], None] | None = None,
) -> int:
    """Call each hook in order; returns how many raised. ``report`` also hears of each
    failure (the runner writes it into the run's log: it is not the run's process)."""
    failed = 0
    for hook in hooks:
        try:
            _call(hook, flow, flow_run, state)
        except (Exception, SystemExit) as exc:
            failed += 1
            text = f"{kind} hook {hook_name(hook)} raised {type(exc).__name__}: {exc}"
            logger.exception("%s", text)
            if report is not None:
                report(text)
    return failed


def _call(hook: Hook, flow: object, flow_run: FlowRunContext, state: State) -> None:
    """Call one hook; an ``async def`` hook is run to its end on an event loop of its own."""
    result = hook(flow, flow_run, state)
    if inspect.isawaitable(result):
        import asyncio  # here: most hooks are plain functions

        asyncio.run(_await(result))


async def _await(awaitable: Awaitable[object]) -> None:
    await awaitable

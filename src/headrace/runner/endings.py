"""What follows a run's end in its runner: the hooks its process could not call, and webhooks.

The runner that wrote a run's final state (and only that one) is told here,
after the write. A run's process calls on_completion and on_failure itself,
after its body; when it could not (it was killed: a cancel, a crash, a
timeout) the runner calls the flow's on_cancellation, on_crashed or
on_failure hooks, with the flow object it serves, in a daemon thread: a hook
that blocks holds up neither the runner's loop nor its exit. What a hook
raises goes into the run's log, and so does what it prints (through the log
sink: echoed as the run's lines, JSON records with ``HEADRACE_LOG_FORMAT=json``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from headrace.exceptions import StoreError
from headrace.flow_runs import FlowRun, LogRecord
from headrace.hooks import HookKind, call_hooks
from headrace.process.protocol import Failed, FinalEvent, Invalid
from headrace.runner.hook_output import RunLog, printed_lines
from headrace.runner.served import ServedDeployments
from headrace.runner.webhooks import Webhooks
from headrace.runtime import FlowRunContext
from headrace.states import StateType, utcnow
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)

RUNNER_HOOKS: dict[StateType, HookKind] = {
    StateType.CRASHED: "on_crashed",
    StateType.CANCELLED: "on_cancellation",
    StateType.FAILED: "on_failure",
}


def runner_hook_kind(state: StateType, event: FinalEvent | None) -> HookKind | None:
    """The hooks the runner calls for a run that ended in ``state``: none when the run's
    process reported the outcome itself (it called them)."""
    if state == StateType.FAILED and isinstance(event, Failed | Invalid):
        return None
    return RUNNER_HOOKS.get(state)


class Endings:
    """Calls a run's remaining hooks and sends its webhooks, in the background."""

    def __init__(
        self,
        store: AsyncStore,
        served: ServedDeployments,
        webhooks: Webhooks,
        logs: RunLog | None = None,
    ) -> None:
        self._store = store
        self._logs = logs
        self._served = served
        self.webhooks = webhooks
        self._hooks: set[asyncio.Future[None]] = set()

    def ended(self, final: FlowRun, event: FinalEvent | None) -> None:
        """This runner wrote ``final``, a terminal state: follow it up (returns at once)."""
        deployment_id = final.deployment_id
        if deployment_id is None:
            return
        deployment = self._served.deployments.get(deployment_id)
        if deployment is not None and deployment.notify:
            self.webhooks.deliver(final, deployment.notify)
        flow = self._served.flows.get(deployment_id)
        kind = runner_hook_kind(final.state.type, event)
        if flow is not None and kind is not None and flow.hooks(kind):
            self._call_hooks(kind, flow, final)

    def _call_hooks(self, kind: HookKind, flow: Any, final: FlowRun) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        failures: list[str] = []
        printed: list[tuple[int, str]] = []

        def call() -> None:
            try:
                with printed_lines(printed):
                    hooks = flow.hooks(kind)
                    call_hooks(kind, hooks, flow, context_of(final), final.state, failures.append)
            finally:
                loop.call_soon_threadsafe(_settle, done)

        self._hooks.add(done)
        done.add_done_callback(self._hooks.discard)
        done.add_done_callback(lambda _: self._log_printed(final, printed))
        done.add_done_callback(lambda _: self._log_failures(final, failures))
        threading.Thread(target=call, name=f"headrace-{kind}-{final.name}", daemon=True).start()

    def _log_printed(self, final: FlowRun, printed: list[tuple[int, str]]) -> None:
        """What the hooks printed, as the run's lines (the console's, too)."""
        if self._logs is None or not printed:
            return
        served = self._served.deployments
        deployment = None if final.deployment_id is None else served.get(final.deployment_id)
        fields: dict[str, object] = {
            "flow_run_id": str(final.id),
            "flow_run_name": final.name,
            "deployment": None if deployment is None else f"{final.flow_name}/{deployment.name}",
            "attempt": final.run_count,
        }
        for level, line in printed:
            self._logs.add(final.id, final.name, level, line, time.time(), fields=fields)
        self._logs.end_attempt(final.id, final.name, fields)

    def _log_failures(self, final: FlowRun, failures: list[str]) -> None:
        if failures:
            records = [
                LogRecord(flow_run_id=final.id, level=logging.ERROR, message=m, timestamp=utcnow())
                for m in failures
            ]
            task = asyncio.get_running_loop().create_task(self._write(records))
            self._hooks.add(task)
            task.add_done_callback(self._hooks.discard)

    async def _write(self, records: list[LogRecord]) -> None:
        try:
            await self._store.write_logs(records)
        except StoreError as exc:
            logger.warning("Could not store what a hook raised: %s", exc)

    async def close(self, wait_seconds: float) -> None:
        """Let hooks and deliveries in flight finish for a while; then leave them."""
        if self._hooks:
            await asyncio.wait(set(self._hooks), timeout=wait_seconds)
        await self.webhooks.close(wait_seconds)


def context_of(run: FlowRun) -> FlowRunContext:
    """The run as its process's ``headrace.runtime.flow_run`` would read it."""
    return FlowRunContext(
        id=str(run.id),
        name=run.name,
        run_count=run.run_count,
        parameters=dict(run.parameters),
        deployment_id=None if run.deployment_id is None else str(run.deployment_id),
        scheduled_start_time=run.expected_start_time,
    )


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)

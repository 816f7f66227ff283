"""Following a flow run from a terminal: its state as it changes, and its log lines as they land.

The store is polled (every ``WATCH_POLL_SECONDS``); the state is read before
the logs, and a run's logs are stored before its final state, so the last read
after a terminal state has every line.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from rich.console import Console
from rich.status import Status
from rich.text import Text

from headrace.cli_output import format_duration, log_line, run_seconds, state_change_line
from headrace.client import HeadraceClient
from headrace.flow_runs import FlowRun
from headrace.states import State, StateType
from headrace.store.base import MAX_PAGE

WATCH_POLL_SECONDS = 0.2


@dataclass
class Follow:
    """What to show while following, and for how long."""

    show_states: bool = True
    spinner: bool = True
    timeout_seconds: float | None = None


async def print_logs(
    client: HeadraceClient, flow_run_id: UUID, console: Console, after_id: int = 0
) -> int:
    """Print every log line after ``after_id``, page by page; return the last id printed."""
    while True:
        page = await client.read_logs(flow_run_id, after_id=after_id)
        for record in page:
            console.print(log_line(record), soft_wrap=True, highlight=False)
            after_id = record.id
        if len(page) < MAX_PAGE:
            return after_id


async def follow_run(
    client: HeadraceClient, flow_run_id: UUID, console: Console, options: Follow
) -> FlowRun | None:
    """Show the run until it ends and return it; None when the timeout ran out first.

    Every state the run passes through is shown (from its history, so a state
    shorter than a poll is not skipped); a final state comes after the last logs.
    """
    deadline = (
        None if options.timeout_seconds is None else time.monotonic() + options.timeout_seconds
    )
    after_id = 0
    states = _StatePrinter(client, flow_run_id, console) if options.show_states else None
    with _spinner(console, options.spinner) as status:
        while True:
            run = await client.read_flow_run(flow_run_id)
            if states is not None:
                await states.print_until(run, final=False)
            after_id = await print_logs(client, flow_run_id, console, after_id)
            if run.state.is_terminal:
                if states is not None:
                    await states.print_until(run, final=True)
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if status is not None:
                status.update(_status_text(run))
            await asyncio.sleep(WATCH_POLL_SECONDS)


class _StatePrinter:
    """Prints each state of a run's history once, up to the state last read.

    A final state is held back until ``final=True``, so that it follows the run's last logs.
    """

    def __init__(self, client: HeadraceClient, flow_run_id: UUID, console: Console) -> None:
        self._client = client
        self._flow_run_id = flow_run_id
        self._console = console
        self._printed = 0
        self._last: State | None = None

    async def print_until(self, run: FlowRun, *, final: bool) -> None:
        if run.state == self._last:
            return
        history = await self._client.read_state_history(self._flow_run_id)
        upto = [s for s in history if s.timestamp <= run.state.timestamp]
        if not final:
            upto = [s for s in upto if not s.is_terminal]
        for state in upto[self._printed :]:
            self._console.print(state_change_line(state), soft_wrap=True, highlight=False)
        self._printed = max(self._printed, len(upto))
        if final or not run.state.is_terminal:
            self._last = run.state


@contextlib.contextmanager
def _spinner(console: Console, wanted: bool) -> Iterator[Status | None]:
    if not wanted:
        yield None
        return
    with console.status("Waiting for the flow run…") as status:
        yield status


def _status_text(run: FlowRun) -> Text:
    text = Text.assemble("Flow run ", (run.name, "bold"), " is ", run.state.type.value)
    elapsed = run_seconds(run)
    if elapsed is not None:
        text.append(f" ({format_duration(elapsed)})")
    elif run.state.type == StateType.SCHEDULED:
        text.append(" (waiting for a runner serving its deployment)")
    return text

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
from headrace.states import StateType
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
    """Show the run until it ends and return it; None when the timeout ran out first."""
    deadline = None if options.timeout_seconds is None else time.monotonic() + options.timeout_seconds
    after_id = 0
    seen: StateType | None = None
    with _spinner(console, options.spinner) as status:
        while True:
            run = await client.read_flow_run(flow_run_id)
            if options.show_states and run.state.type != seen:
                console.print(state_change_line(run), soft_wrap=True, highlight=False)
                seen = run.state.type
            after_id = await print_logs(client, flow_run_id, console, after_id)
            if run.state.is_terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if status is not None:
                status.update(_status_text(run))
            await asyncio.sleep(WATCH_POLL_SECONDS)


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

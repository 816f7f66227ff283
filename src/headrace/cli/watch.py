"""Following a flow run from a terminal: its state as it changes, and its log lines as they land.

The store is polled (every ``WATCH_POLL_SECONDS``). Each poll reads the new
log lines before the run: a run's RUNNING is stored before its first line, so
every line read comes with the states before it, and the two are printed in
time order. A run's logs are stored before its final state, so one more read
after a final state has every line, and the final state is printed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from uuid import UUID

from rich.console import Console
from rich.status import Status
from rich.text import Text

from headrace.cli.output import format_duration, log_line, run_seconds, state_change_line
from headrace.client import HeadraceClient
from headrace.flow_runs import FlowRun, LogRecord
from headrace.states import State, StateType
from headrace.store.records import MAX_PAGE

WATCH_POLL_SECONDS = 0.2


@dataclass
class Follow:
    """What to show while following, and for how long."""

    show_states: bool = True
    spinner: bool = True
    timeout_seconds: float | None = None


async def read_new_logs(
    client: HeadraceClient, flow_run_id: UUID, after_id: int = 0
) -> list[LogRecord]:
    """Every log line after ``after_id``, page by page."""
    lines: list[LogRecord] = []
    while True:
        page = await client.read_logs(flow_run_id, after_id=after_id)
        lines.extend(page)
        if page:
            after_id = page[-1].id
        if len(page) < MAX_PAGE:
            return lines


async def print_logs(client: HeadraceClient, flow_run_id: UUID, console: Console) -> bool:
    """Print every log line of the run; False when it has none."""
    lines = await read_new_logs(client, flow_run_id)
    for record in lines:
        console.print(log_line(record), soft_wrap=True, highlight=False)
    return bool(lines)


def in_order(states: Sequence[State], logs: Sequence[LogRecord]) -> list[State | LogRecord]:
    """States and log lines by time, a state first on a tie, and a final state after everything."""
    entries: list[State | LogRecord] = [*states, *logs]
    return sorted(
        entries,
        key=lambda e: (isinstance(e, State) and e.is_terminal, e.timestamp),
    )


async def follow_run(
    client: HeadraceClient, flow_run_id: UUID, console: Console, options: Follow
) -> FlowRun | None:
    """Show the run until it ends and return it; None when the timeout ran out first.

    Every state the run passes through is shown (from its history, so a state
    shorter than a poll is not skipped), in time order with the log lines.
    """
    deadline = (
        None if options.timeout_seconds is None else time.monotonic() + options.timeout_seconds
    )
    after_id = 0
    history = _StateHistory(client, flow_run_id) if options.show_states else None
    with _spinner(console, options.spinner) as status:
        while True:
            logs = await read_new_logs(client, flow_run_id, after_id)
            run = await client.read_flow_run(flow_run_id)
            if run.state.is_terminal:
                logs += await read_new_logs(client, flow_run_id, logs[-1].id if logs else after_id)
            if logs:
                after_id = logs[-1].id
            states = [] if history is None else await history.new_states(run)
            for entry in in_order(states, logs):
                line = state_change_line(entry) if isinstance(entry, State) else log_line(entry)
                console.print(line, soft_wrap=True, highlight=False)
            if run.state.is_terminal:
                return run
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if status is not None:
                status.update(_status_text(run))
            await asyncio.sleep(WATCH_POLL_SECONDS)


class _StateHistory:
    """Hands out each state of a run's history once, up to the state last read."""

    def __init__(self, client: HeadraceClient, flow_run_id: UUID) -> None:
        self._client = client
        self._flow_run_id = flow_run_id
        self._given = 0
        self._last: State | None = None

    async def new_states(self, run: FlowRun) -> list[State]:
        if run.state == self._last:
            return []
        self._last = run.state
        history = await self._client.read_state_history(self._flow_run_id)
        upto = [s for s in history if s.timestamp <= run.state.timestamp]
        new = upto[self._given :]
        self._given = max(self._given, len(upto))
        return new


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

"""Task runs on the command line: the table ``headrace runs inspect`` shows below a run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from rich import box
from rich.table import Table

from headrace.cli.output import first_line, format_duration, format_time, state_text

if TYPE_CHECKING:
    from headrace.client import HeadraceClient
    from headrace.task_runs import TaskRun

TASK_RUNS_SHOWN = 50
"""Rows the table shows at most; ``--json`` gives every task run."""


def task_runs_of(run_id: UUID) -> Callable[[HeadraceClient], Awaitable[list[TaskRun]]]:
    async def read(client: HeadraceClient) -> list[TaskRun]:
        return await client.read_task_runs(run_id)

    return read


def task_runs_table(task_runs: Sequence[TaskRun]) -> Table:
    """One row per task run (the first ``TASK_RUNS_SHOWN``): name, state, attempts, start,
    duration and message."""
    table = Table(
        title=f"Task runs ({len(task_runs)})",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    table.add_column("Task run", no_wrap=True)
    table.add_column("State", no_wrap=True)
    table.add_column("Attempts", justify="right")
    table.add_column("Started", no_wrap=True)
    table.add_column("Duration", justify="right")
    table.add_column("Message", overflow="fold")
    for task_run in task_runs[:TASK_RUNS_SHOWN]:
        seconds = None
        if task_run.start_time is not None and task_run.end_time is not None:
            seconds = (task_run.end_time - task_run.start_time).total_seconds()
        state = state_text(task_run.state.type)
        if task_run.state.name != task_run.state.type.default_name:
            state.append(f" ({task_run.state.name})")
        table.add_row(
            task_run.name,
            state,
            str(task_run.run_count),
            format_time(task_run.start_time),
            format_duration(seconds),
            first_line(task_run.state.message),
        )
    if len(task_runs) > TASK_RUNS_SHOWN:
        more = len(task_runs) - TASK_RUNS_SHOWN
        table.caption = f"... and {more} more (--json shows every task run)"
        table.caption_justify = "left"
    return table

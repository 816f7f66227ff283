"""What ``headrace runs inspect`` tells of a run's family: the run that started it, the runs
it started (its subflows, and the runs of ``run_deployment``), and a result kept apart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from rich.console import Group, RenderableType
from rich.text import Text

from headrace.client import HeadraceClient
from headrace.flow_runs import FlowRun
from headrace.states import StateType


def children_of(run_id: UUID) -> Callable[[HeadraceClient], Awaitable[list[FlowRun]]]:
    async def read(client: HeadraceClient) -> list[FlowRun]:
        return await client.read_flow_runs(parent_flow_run_id=run_id, limit=1000)

    return read


def result_text(run: FlowRun) -> str | None:
    """For a result kept in the result store: where it is and how to read it."""
    if run.result_ref is None or run.state.type != StateType.COMPLETED:
        return None
    return f"kept whole at {run.result_ref} (GET /flow_runs/{run.id}/result)"


def family_detail(run: FlowRun, children: Sequence[FlowRun]) -> RenderableType:
    """The parent (if any) and a table of the children, oldest first."""
    parts: list[RenderableType] = []
    if run.parent_flow_run_id is not None:
        parts += [Text(), Text.assemble(("Parent run  ", "bold"), str(run.parent_flow_run_id))]
    if children:
        from headrace.cli.output import _table, state_text

        table = _table("Child runs")
        for column in ("ID", "Name", "Flow", "State"):
            table.add_column(column, no_wrap=column == "ID")
        for child in sorted(children, key=lambda c: c.created):
            table.add_row(str(child.id), child.name, child.flow_name, state_text(child.state))
        parts += [Text(), table]
    return Group(*parts)

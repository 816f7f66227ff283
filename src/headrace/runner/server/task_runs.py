"""``GET /flow_runs/{id}/task_runs``: the task calls of a run, as its process reported them."""

from __future__ import annotations

from uuid import UUID

from fastapi import FastAPI
from starlette.responses import Response

from headrace.runner.server.json_io import json_response
from headrace.runner.server.runs import NOT_FOUND, Context


def add_task_run_routes(app: FastAPI) -> None:
    app.add_api_route(
        "/flow_runs/{flow_run_id}/task_runs",
        read_task_runs,
        summary="List a flow run's task runs",
        tags=["flow runs"],
        responses=NOT_FOUND,
    )


async def read_task_runs(ctx: Context, flow_run_id: UUID) -> Response:
    """Each task run of the flow run, in the order they started: id, name, task name,
    state (type, name, message, timestamp), run_count (attempts), start and end time and
    cache key. 404 for an unknown flow run."""
    task_runs = await ctx.client.read_task_runs(flow_run_id)
    return json_response([task_run.model_dump(mode="json") for task_run in task_runs])

"""``GET /flow_runs/{id}/result``: a run's whole result, wherever it is kept.

A result small enough lives in the run's row (and in ``GET /flow_runs/{id}``);
a larger one in the result store, referenced by the run's ``result_ref``. Either
way this route answers the value itself, as JSON.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import FastAPI
from starlette.responses import Response

from headrace.runner.server.json_io import json_response
from headrace.runner.server.runs import NOT_FOUND, Context

RESULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "The run has no result: it has not completed, or it was not kept"},
}


def add_result_routes(app: FastAPI) -> None:
    app.add_api_route(
        "/flow_runs/{flow_run_id}/result",
        read_flow_run_result,
        summary="Read a flow run's whole result",
        tags=["flow runs"],
        responses=RESULT_RESPONSES,
    )


async def read_flow_run_result(ctx: Context, flow_run_id: UUID) -> Response:
    """The value the run's flow returned, as JSON (however large: see ``result_ref``)."""
    return json_response(await ctx.client.read_flow_run_result(flow_run_id))

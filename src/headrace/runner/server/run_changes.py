"""Routes that change or remove deployments and runs: pause, resume, delete, retry.

Each goes through the same ``HeadraceClient`` method the CLI calls on a machine
that reads the database, so ``headrace deployments pause`` or ``headrace runs
retry`` over ``HEADRACE_API_URL`` refuse and answer as they do locally (404 for an
unknown id, 409 for a state that forbids the change).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import FastAPI
from starlette.responses import Response

from headrace.runner.server.json_io import json_response, run_json
from headrace.runner.server.runs import NOT_FOUND, Context, deployment_with_runners

NO_DEPLOYMENT: dict[int | str, dict[str, Any]] = {
    404: {"description": "No deployment with that id"}
}
DELETE_DEPLOYMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NO_DEPLOYMENT,
    409: {"description": "A live runner serves it, or one of its runs is being executed"},
}
RETRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "The run has not ended"},
}
DELETE_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"description": "The run has not ended: cancel it first"},
}


def add_change_routes(app: FastAPI) -> None:
    """Pause, resume and delete a deployment; retry and delete a run."""
    for action, endpoint in (("pause", pause_deployment), ("resume", resume_deployment)):
        app.add_api_route(
            f"/deployments/{{deployment_id}}/{action}",
            endpoint,
            methods=["POST"],
            summary=f"{action.capitalize()} a deployment's schedules",
            tags=["deployments"],
            responses=NO_DEPLOYMENT,
        )
    app.add_api_route(
        "/deployments/{deployment_id}",
        delete_deployment,
        methods=["DELETE"],
        summary="Delete a deployment and its queued runs",
        tags=["deployments"],
        responses=DELETE_DEPLOYMENT_RESPONSES,
    )
    app.add_api_route(
        "/flow_runs/{flow_run_id}/retry",
        retry_flow_run,
        methods=["POST"],
        status_code=201,
        summary="Retry an ended flow run as a new run",
        tags=["flow runs"],
        responses=RETRY_RESPONSES,
    )
    app.add_api_route(
        "/flow_runs/{flow_run_id}",
        delete_flow_run,
        methods=["DELETE"],
        summary="Delete an ended flow run",
        tags=["flow runs"],
        responses=DELETE_RUN_RESPONSES,
    )


async def pause_deployment(ctx: Context, deployment_id: UUID) -> Response:
    """Pause the deployment's schedules: its planned runs are dropped, none start until it is
    resumed; runs triggered by hand still run. Its runners follow at their next poll."""
    deployment = await ctx.client.set_deployment_paused(deployment_id, True)
    return json_response(await deployment_with_runners(ctx, deployment))


async def resume_deployment(ctx: Context, deployment_id: UUID) -> Response:
    """Resume the deployment's schedules from now on (missed times are not caught up)."""
    deployment = await ctx.client.set_deployment_paused(deployment_id, False)
    return json_response(await deployment_with_runners(ctx, deployment))


async def delete_deployment(ctx: Context, deployment_id: UUID) -> Response:
    """Delete the deployment and its queued runs; its other runs stay readable.

    409 while a live runner serves it or one of its runs is being executed.
    """
    deployment = await ctx.client.read_deployment(deployment_id)
    removed = await ctx.client.delete_deployment(deployment_id)
    label = f"{deployment.flow_name}/{deployment.name}"
    return json_response(
        {
            "message": f"Deleted deployment {label} and {removed} queued run(s)",
            "deleted_queued_runs": removed,
        }
    )


async def retry_flow_run(ctx: Context, flow_run_id: UUID) -> Response:
    """A new run of the ended run's deployment (or flow) with the same parameters; the
    deployment's current definition applies. 409 while the run has not ended."""
    created = await ctx.client.retry_flow_run(flow_run_id)
    return json_response(run_json(created), 201)


async def delete_flow_run(ctx: Context, flow_run_id: UUID) -> Response:
    """Delete the ended run with its state history and logs. 409 while it has not ended."""
    run = await ctx.client.read_flow_run(flow_run_id)
    await ctx.client.delete_flow_run(flow_run_id)
    return json_response({"message": f"Deleted flow run {run.name!r}"})

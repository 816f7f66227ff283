"""Routes about runs and deployments: status, listing, cancellation, logs, served deployments."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import pydantic_core
from fastapi import APIRouter, Header, Query
from starlette.responses import Response, StreamingResponse

from headrace.deployments import Deployment
from headrace.runner.server.context import ServerContext
from headrace.runner.server.json_io import json_response, raw_json_response, run_json
from headrace.runner.server.watch import follow_logs, log_json
from headrace.states import StateType
from headrace.store.records import MAX_PAGE

MAX_OFFSET = 2**31 - 1
MAX_LOG_ID = 2**53
NO_NUL = r"^[^\x00]*$"


def run_router(ctx: ServerContext) -> APIRouter:
    """``/flow_runs...`` routes over the store the runner uses."""
    router = APIRouter(tags=["flow runs"])
    store = ctx.store

    @router.get("/flow_runs/{flow_run_id}", summary="Read a flow run")
    async def read_flow_run(flow_run_id: UUID) -> Response:
        """The run: state, state history, parameters, times, attempts and result."""
        run = await store.read_flow_run(flow_run_id)
        history = await store.read_state_history(flow_run_id)
        return json_response(
            run_json(run, state_history=[state.model_dump(mode="json") for state in history])
        )

    @router.get("/flow_runs", summary="List flow runs")
    async def read_flow_runs(
        deployment_id: UUID | None = None,
        state: Annotated[list[StateType] | None, Query()] = None,
        flow_name: Annotated[str | None, Query(max_length=1000, pattern=NO_NUL)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Response:
        """Runs matching every filter given, newest first; ``state`` may repeat."""
        runs = await store.read_flow_runs(
            deployment_id=deployment_id,
            flow_name=flow_name,
            states=state,
            limit=limit,
            offset=offset,
        )
        return json_response([run_json(run) for run in runs])

    @router.post("/flow_runs/{flow_run_id}/cancel", status_code=202, summary="Cancel a flow run")
    async def cancel_flow_run(flow_run_id: UUID) -> Response:
        """Cancel a run: at once if it has not started, else its runner kills its process.

        409 when the run has already ended.
        """
        run = await store.request_cancellation(flow_run_id)
        ctx.runner.wake("cancelled")
        return json_response(run_json(run), 202)

    @router.get("/flow_runs/{flow_run_id}/logs", summary="Read or follow a flow run's logs")
    async def read_logs(
        flow_run_id: UUID,
        follow: bool = False,
        after_id: Annotated[int, Query(ge=0, le=MAX_LOG_ID)] = 0,
        last_event_id: Annotated[
            int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_LOG_ID)
        ] = None,
    ) -> Response:
        """Log lines after ``after_id`` as JSON, at most 1,000 (a full page has a ``Link``
        header to the next); with ``follow=true`` a Server-Sent Events stream (one ``data:``
        JSON line per log line) that ends with an ``end`` event once the run has ended."""
        await store.read_flow_run(flow_run_id)  # 404 before any streaming starts
        start = max(after_id, last_event_id or 0)
        if follow:
            return StreamingResponse(
                follow_logs(store, flow_run_id, start, lambda: ctx.closing),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        lines = await store.read_logs(flow_run_id, after_id=start)
        headers = None
        if len(lines) >= MAX_PAGE:  # a full page: there may be more
            headers = {
                "Link": f'</flow_runs/{flow_run_id}/logs?after_id={lines[-1].id}>; rel="next"'
            }
        return json_response([log_json(line) for line in lines], headers=headers)

    return router


def deployments_router(ctx: ServerContext) -> APIRouter:
    """``GET /deployments``: what this runner serves, encoded once."""
    router = APIRouter(tags=["deployments"])
    body = pydantic_core.to_json(
        [deployment_json(d) for d in ctx.runner.deployments.values()], inf_nan_mode="null"
    )

    @router.get("/deployments", summary="List the served deployments")
    async def read_deployments() -> Response:
        """Each served deployment: id, name, flow, parameter schema, defaults, schedules,
        and the URL that runs it."""
        return raw_json_response(body)

    return router


def deployment_json(deployment: Deployment) -> dict[str, Any]:
    data = deployment.model_dump(
        mode="json",
        include={
            "id",
            "name",
            "flow_name",
            "entrypoint",
            "description",
            "version",
            "tags",
            "parameter_schema",
            "parameters",
            "enforce_parameter_schema",
            "schedules",
            "paused",
            "concurrency_limit",
        },
    )
    data["run_url"] = run_path(deployment.id)
    return data


def run_path(deployment_id: UUID) -> str:
    return f"/deployment/{deployment_id}/run"

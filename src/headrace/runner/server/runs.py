"""Routes about runs and deployments: status, listing, cancellation, logs, served deployments.

Each handler gets the ``ServerContext`` through a dependency and reads or
cancels through the Python client, so the HTTP API and ``get_client()`` do the
same thing; ``add_run_routes`` adds them to the app.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import pydantic_core
from fastapi import Depends, FastAPI, Header, Query
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from headrace.deployments import Deployment
from headrace.runner.server.context import StoreContext
from headrace.runner.server.json_io import (
    BadRequestBody,
    json_response,
    raw_json_response,
    run_json,
)
from headrace.runner.server.watch import follow_logs, log_json
from headrace.states import StateType
from headrace.store.records import MAX_PAGE

MAX_OFFSET = 2**31 - 1
MAX_LOG_ID = 2**53
NO_NUL = r"^[^\x00]*$"
LAST_EVENT_ID_PATTERN = r"^[0-9]{1,15}$"
"""A log line's id, as the stream sends it in ``id:`` fields."""


def flow_run_id_schema(schema: dict[str, Any]) -> None:
    """A query parameter's schema: a flow run id, which the route checks itself (400 naming
    it), so that nothing else is documented as accepted."""
    schema.clear()
    schema.update(type="string", format="uuid", pattern=UUID_PATTERN)


UUID_PATTERN = "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
BAD_FILTER: dict[int | str, dict[str, Any]] = {
    400: {"description": "A filter is not what it should be (a parent_flow_run_id not a UUID)"}
}


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No flow run with that id"}}
LOG_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    200: {
        "description": "Log lines as JSON, or with `follow=true` a Server-Sent Events stream",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    400: {"description": "`Last-Event-ID` is not the id of a log line"},
}
DEPLOYMENT_FIELDS = frozenset(
    {
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
    }
)
"""What ``GET /deployments`` tells of each served deployment, besides its ``run_url``."""


def server_context(request: Request) -> StoreContext:
    """The context ``build_server`` left on the app."""
    ctx: StoreContext = request.app.state.headrace
    return ctx


Context = Annotated[StoreContext, Depends(server_context)]


def add_totals_and_deployment_routes(app: FastAPI) -> None:
    """What a remote client reads besides runs: totals by state, a deployment by id."""
    app.add_api_route(
        "/flow_runs/totals",
        count_flow_runs,
        summary="Count flow runs by state",
        tags=["flow runs"],
        responses=BAD_FILTER,
    )
    app.add_api_route(
        "/deployments/{deployment_id}",
        read_deployment,
        summary="Read a deployment, with the runners serving it",
        tags=["deployments"],
        responses={404: {"description": "No deployment with that id"}},
    )


def add_run_routes(app: FastAPI) -> None:
    """``/flow_runs...`` and ``/deployments``, over the store the runner uses."""
    add_totals_and_deployment_routes(app)  # before /flow_runs/{flow_run_id}: "totals" is no id
    app.add_api_route(
        "/flow_runs/{flow_run_id}",
        read_flow_run,
        summary="Read a flow run",
        tags=["flow runs"],
        responses=NOT_FOUND,
    )
    app.add_api_route(
        "/flow_runs",
        read_flow_runs,
        summary="List flow runs",
        tags=["flow runs"],
        responses=BAD_FILTER,
    )
    app.add_api_route(
        "/flow_runs/{flow_run_id}/cancel",
        cancel_flow_run,
        methods=["POST"],
        status_code=202,
        summary="Cancel a flow run",
        tags=["flow runs"],
        responses={**NOT_FOUND, 409: {"description": "The run has already ended"}},
    )
    app.add_api_route(
        "/flow_runs/{flow_run_id}/logs",
        read_logs,
        summary="Read or follow a flow run's logs",
        tags=["flow runs"],
        responses=LOG_RESPONSES,
    )
    app.add_api_route(
        "/flow_runs/{flow_run_id}/notifications",
        read_notifications,
        summary="Read a flow run's webhook deliveries",
        tags=["flow runs"],
        responses=NOT_FOUND,
    )
    app.add_api_route(
        "/deployments",
        read_deployments,
        summary="List the served deployments",
        tags=["deployments"],
    )


async def read_flow_run(ctx: Context, flow_run_id: UUID) -> Response:
    """The run: state, state history, parameters, times, attempts and result."""
    run = await ctx.client.read_flow_run(flow_run_id)
    # The run is known now: the client's read_state_history would read it a second time.
    history = await ctx.store.read_state_history(flow_run_id)
    return json_response(
        run_json(run, state_history=[state.model_dump(mode="json") for state in history])
    )


@dataclass(frozen=True)
class RunFilters:
    """The filters ``GET /flow_runs`` and ``GET /flow_runs/totals`` share."""

    deployment_id: UUID | None
    states: list[StateType] | None
    flow_name: str | None
    since: datetime | None
    until: datetime | None
    parent_flow_run_id: UUID | None = None
    """The runs that run started (its subflows among them)."""

    def keywords(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_filters(
    deployment_id: UUID | None = None,
    state: Annotated[list[StateType] | None, Query()] = None,
    flow_name: Annotated[str | None, Query(max_length=1000, pattern=NO_NUL)] = None,
    since: Annotated[
        datetime | None, Query(description="Runs created at or after this time (UTC if no zone).")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="Runs created before this time (UTC if no zone).")
    ] = None,
    parent_flow_run_id: Annotated[str | None, Query(json_schema_extra=flow_run_id_schema)] = None,
) -> RunFilters:
    parent = parent_id(parent_flow_run_id)
    return RunFilters(deployment_id, state, flow_name, _aware(since), _aware(until), parent)


Filters = Annotated[RunFilters, Depends(run_filters)]


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def read_flow_runs(
    ctx: Context,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> Response:
    """Runs matching every filter given, newest first; ``state`` may repeat;
    ``parent_flow_run_id`` lists the runs that run started (its subflows among them)."""
    runs = await ctx.client.read_flow_runs(**filters.keywords(), limit=limit, offset=offset)
    return json_response([run_json(run) for run in runs])


async def count_flow_runs(ctx: Context, filters: Filters) -> Response:
    """How many runs match every filter given (as ``GET /flow_runs``), in all and by state."""
    totals = await ctx.client.count_flow_runs(**filters.keywords())
    by_state = {state.value: count for state, count in totals.items()}
    return json_response({"total": sum(by_state.values()), "by_state": by_state})


async def cancel_flow_run(ctx: Context, flow_run_id: UUID) -> Response:
    """Cancel a run: at once if it has not started, else its runner kills its process.

    A subflow's run is stopped inside its caller's process, which goes on: the
    call raises ``FlowRunCancelled`` there. 409 when the run has already ended.
    """
    run = await ctx.client.cancel_flow_run(flow_run_id)  # the store's change feed wakes runners
    return json_response(run_json(run), 202)


async def read_logs(
    ctx: Context,
    flow_run_id: UUID,
    follow: bool = False,
    after_id: Annotated[int, Query(ge=0, le=MAX_LOG_ID)] = 0,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            json_schema_extra={"pattern": LAST_EVENT_ID_PATTERN},
            description="Resume a stream after the log line of this id (sent by EventSource).",
        ),
    ] = None,
) -> Response:
    """Log lines after ``after_id`` as JSON, at most 1,000 (a full page has a ``Link``
    header to the next); with ``follow=true`` a Server-Sent Events stream (one ``data:``
    JSON line per log line) that ends with an ``end`` event once the run has ended."""
    start = max(after_id, log_id(last_event_id))
    if follow:
        await ctx.client.read_flow_run(flow_run_id)  # 404 before any streaming starts
        return StreamingResponse(
            follow_logs(ctx.store, flow_run_id, start, lambda: ctx.closing),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    lines = await ctx.client.read_logs(flow_run_id, after_id=start)
    headers = None
    if len(lines) >= MAX_PAGE:  # a full page: there may be more
        headers = {"Link": f'</flow_runs/{flow_run_id}/logs?after_id={lines[-1].id}>; rel="next"'}
    return json_response([log_json(line) for line in lines], headers=headers)


async def read_notifications(ctx: Context, flow_run_id: UUID) -> Response:
    """Every attempt to deliver the run's webhooks, oldest first: its URL, event, attempt,
    the receiver's status code or the error, and whether it was delivered."""
    deliveries = await ctx.client.read_notification_deliveries(flow_run_id)
    return json_response([delivery.model_dump(mode="json") for delivery in deliveries])


def parent_id(text: str | None) -> UUID | None:
    if text is None:
        return None
    try:
        return UUID(text)
    except ValueError:
        raise BadRequestBody(
            f"parent_flow_run_id {text[:40]!r} is not a flow run id (a UUID)"
        ) from None


def log_id(last_event_id: str | None) -> int:
    """The log id of a ``Last-Event-ID`` header; the stream only ever sends whole numbers."""
    if last_event_id is None:
        return 0
    if re.fullmatch(LAST_EVENT_ID_PATTERN, last_event_id) is None:
        raise BadRequestBody(
            f"Last-Event-ID {last_event_id[:40]!r} is not the id of a log line (a whole number "
            "of at most 15 digits, as the stream sends in its id: fields)"
        )
    return int(last_event_id)


async def read_deployments(ctx: Context) -> Response:
    """Each served deployment: id, name, flow, parameter schema, defaults, schedules,
    and the URL that runs it."""
    if ctx.deployments_json is None:
        return raw_json_response(deployments_json(await ctx.store.read_deployments()))
    return raw_json_response(ctx.deployments_json)


async def read_deployment(ctx: Context, deployment_id: UUID) -> Response:
    """A deployment as it is stored (served here or not), with the runners serving it."""
    deployment = await ctx.client.read_deployment(deployment_id)
    return json_response(await deployment_with_runners(ctx, deployment))


async def deployment_with_runners(ctx: StoreContext, deployment: Deployment) -> dict[str, Any]:
    """A deployment as ``GET /deployments/{id}`` renders it: stored fields and its runners."""
    found = await ctx.client.read_serving_runners([deployment.id])
    data = deployment.model_dump(mode="json")
    data["runners"] = [runner.model_dump(mode="json") for runner in found.get(deployment.id, [])]
    return data


def deployments_json(deployments: Iterable[Deployment]) -> bytes:
    """The body of ``GET /deployments``, encoded once."""
    return pydantic_core.to_json([deployment_json(d) for d in deployments], inf_nan_mode="null")


def deployment_json(deployment: Deployment) -> dict[str, Any]:
    data = deployment.model_dump(mode="json", include=set(DEPLOYMENT_FIELDS))
    data["run_url"] = run_path(deployment.id)
    return data


def run_path(deployment_id: UUID) -> str:
    return f"/deployment/{deployment_id}/run"

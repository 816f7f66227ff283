"""The trigger routes: ``POST /deployment/{id}/run`` (one per deployment) and ``POST /flow/run``.

Both share one path to the queue: backpressure (429 with ``Retry-After`` once
the backlog is full), idempotency (an ``Idempotency-Key`` the store has seen
gives back its run with 200, never a second run, and 422 when the key's run has
other parameters), the run committed before the
answer, the runner woken so the run starts at once, and ``?wait=SECONDS``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from headrace import new_runs
from headrace.deployments import Deployment
from headrace.exceptions import EntrypointError, ParameterValidationError
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.parameters import non_finite_errors, prepare_validator
from headrace.runner.served import FlowFile
from headrace.runner.server.backlog import QUEUE_DEPTH_HEADER, BacklogFull
from headrace.runner.server.context import ServerContext
from headrace.runner.server.import_space import AnyFlow
from headrace.runner.server.json_io import (
    BadRequestBody,
    json_response,
    message,
    raw_json_response,
    read_json_object,
    run_json,
)
from headrace.runner.server.openapi import deployment_body
from headrace.runner.server.runs import run_path
from headrace.runner.server.watch import MAX_WAIT_SECONDS, wait_for_end
from headrace.runner.tracing import TRACEPARENT_HEADER, TriggerTrace, traceparent_of, trigger_span

logger = logging.getLogger(__name__)

SCHEMA_CHANGED = "A change in flow parameters has been detected. Please restart the runner."
IDEMPOTENCY_KEY_PATTERN = r"^[!-~]{1,255}$"
"""Printable ASCII without spaces, at most 255 characters."""

Wait = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_WAIT_SECONDS,
        allow_inf_nan=False,
        description="Seconds to wait for the run to end: 200 with the finished run if it "
        "ends in time, else 202 with a Location to poll.",
    ),
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Repeat a request safely: the same key with the same parameters returns "
        "the same run (200); with other parameters, 422.",
    ),
]
RunName = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=r"^[^\x00]*$", description="The run's name."),
]
StartAt = Annotated[
    datetime | None,
    Query(description="Start the run at this time (UTC if no zone), not at once."),
]
Endpoint = Callable[..., Awaitable[Response]]

TRIGGER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The run of a known Idempotency-Key, or (with ?wait) the ended run"},
    202: {"description": "With ?wait: the run has not ended yet; poll its Location"},
    400: {"description": "Invalid body or parameters; `errors` names each parameter"},
    422: {"description": "The Idempotency-Key was used with other parameters, or a bad query"},
    429: {"description": "The backlog is full: retry after `Retry-After` seconds"},
    503: {"description": "The database cannot be reached: retry after `Retry-After` seconds"},
    507: {"description": "The database is full (no space left)"},
}


class FlowRunRequest(BaseModel):
    """The body of ``POST /flow/run``: a misspelt field is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")

    entrypoint: str = Field(min_length=1, max_length=4096)
    parameters: dict[str, Any] | None = None
    parent_task_run_id: UUID | None = None


def deployment_endpoint(ctx: ServerContext, deployment: Deployment) -> Endpoint:
    """The handler of ``POST /deployment/<id>/run`` for one deployment."""
    flow = ctx.runner.flows.get(deployment.id)
    if flow is None and deployment.enforce_parameter_schema and deployment.parameter_schema:
        prepare_validator(deployment.parameter_schema)  # compiled now, not on the first trigger
    source = FlowFile.of(deployment, flow)
    path = run_path(deployment.id)

    async def run_deployment(
        request: Request,
        wait: Wait = None,
        idempotency_key: IdempotencyKey = None,
        name: RunName = None,
        start_at: StartAt = None,
    ) -> Response:
        parameters = await read_parameters(request, empty={})
        checked = flow if source is None else await _followed(source, request, path, deployment)
        new = new_runs.for_deployment(
            deployment, parameters, flow=checked, idempotency_key=idempotency_key
        )
        if name is not None or start_at is not None:
            when = start_at.replace(tzinfo=UTC) if start_at and not start_at.tzinfo else start_at
            new = new.model_copy(update={"name": name, "expected_start_time": when})
        return await traced_queue_run(ctx, request, new, wait, id_only=True)

    return run_deployment


async def _followed(
    source: FlowFile, request: Request, path: str, deployment: Deployment
) -> AnyFlow:
    """The flow as its file now defines it: the run will load the file as it is.

    When its parameters changed, the route's OpenAPI body follows, and a warning
    says to restart (the stored deployment keeps the schema it was registered with).
    """
    flow, changed = await source.current()
    if changed:
        logger.warning("%s: %s", source.path, SCHEMA_CHANGED)
        app = request.app
        schema = flow.parameters.model_dump()
        app.request_bodies[path] = deployment_body(
            deployment.model_copy(update={"parameter_schema": schema})
        )
        app.openapi_schema = None
    return flow


def flow_endpoint(ctx: ServerContext) -> Endpoint:
    """The handler of ``POST /flow/run``: any managed flow, by entrypoint."""

    async def run_flow(
        request: Request, wait: Wait = None, idempotency_key: IdempotencyKey = None
    ) -> Response:
        body = await read_parameters(request, inside="parameters")
        try:
            wanted = FlowRunRequest.model_validate(body)
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False, include_context=False)
            return json_response({"message": "Invalid request body", "errors": errors}, 400)
        try:
            flow = await asyncio.to_thread(
                ctx.space.find_flow,
                wanted.entrypoint,
                allow_unmanaged=ctx.settings.runner_server_allow_unmanaged_flows,
            )
        except EntrypointError as exc:
            logger.info("POST /flow/run: %r: %s", wanted.entrypoint[:200], exc)
            return message("Flow not found", 404)
        refusal = _check_managed(ctx, flow, wanted.entrypoint)
        if refusal is not None:
            return refusal
        assert flow is not None
        new = new_runs.for_flow(
            flow,
            wanted.parameters,
            entrypoint=ctx.space.run_entrypoint(wanted.entrypoint),
            runner_id=ctx.runner.record.id,  # this very runner: it loaded the flow
            runner_name=ctx.runner.name,
            parent_task_run_id=wanted.parent_task_run_id,
            idempotency_key=idempotency_key,
        )
        return await traced_queue_run(ctx, request, new, wait)

    return run_flow


async def read_parameters(
    request: Request, *, inside: str | None = None, empty: dict[str, Any] | None = None
) -> Any:
    """The body as a JSON object, or a 400 naming the parameter that holds NaN or Infinity.

    Strict parsing refuses them without saying where; only then is the body
    read again, leniently, to name the parameter (under the ``inside`` key, if
    given) as every other entry point names it.
    """
    try:
        return await read_json_object(request, empty=empty)
    except BadRequestBody:
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):
            body = None
        parameters = body.get(inside) if isinstance(body, dict) and inside else body
        if isinstance(parameters, dict) and (errors := non_finite_errors(parameters)):
            raise ParameterValidationError(errors) from None
        raise


def _check_managed(ctx: ServerContext, flow: AnyFlow | None, entrypoint: str) -> Response | None:
    """403 for a flow outside the import space, unless unmanaged flows are allowed."""
    if flow is not None and ctx.space.is_managed(flow):
        if ctx.space.schema_changed(flow):
            logger.warning(SCHEMA_CHANGED)
        return None
    if not ctx.settings.runner_server_allow_unmanaged_flows:
        return message(
            "This flow is not in the import space of the served deployments; set "
            "HEADRACE_RUNNER_SERVER_ALLOW_UNMANAGED_FLOWS=true to allow it",
            403,
        )
    logger.warning(
        "Running unmanaged flow %r: it is outside the import space of the served "
        "deployments (HEADRACE_RUNNER_SERVER_ALLOW_UNMANAGED_FLOWS=true)",
        entrypoint[:200],
    )
    return None


async def traced_queue_run(
    ctx: ServerContext,
    request: Request,
    new: NewFlowRun,
    wait: float | None,
    *,
    id_only: bool = False,
) -> Response:
    """``queue_run`` in the trigger's span; the run keeps the trace context it continues."""
    incoming = traceparent_of(request.headers.get(TRACEPARENT_HEADER))
    name = f"{request.method} {getattr(request.scope.get('route'), 'path', request.url.path)}"
    with trigger_span(incoming, name, new.deployment_id) as trace:
        if trace.traceparent:
            new = new.model_copy(update={"traceparent": trace.traceparent})
        response = await queue_run(ctx, new, wait, id_only=id_only, trace=trace)
        trace.answered(response.status_code)
        return response


async def queue_run(
    ctx: ServerContext,
    new: NewFlowRun,
    wait: float | None,
    *,
    id_only: bool = False,
    trace: TriggerTrace | None = None,
) -> Response:
    """Queue ``new`` unless the backlog is full; answer 201, 200 (known key), 202 or 429."""
    admitted = await admit(ctx, new)
    if isinstance(admitted, BacklogFull):
        return message(f"{admitted.message}; retry later", 429, admitted.headers)
    run, created, depth = admitted
    if trace is not None:
        trace.created(run, created)
    headers = {QUEUE_DEPTH_HEADER: str(depth)}
    if wait is not None:
        return await _waited(ctx, run, wait, headers, id_only=id_only)
    status = 201 if created else 200
    if id_only:
        return raw_json_response(f'{{"flow_run_id":"{run.id}"}}', status, headers)
    return raw_json_response(run.model_dump_json(), status, headers)


async def admit(ctx: ServerContext, new: NewFlowRun) -> tuple[FlowRun, bool, int] | BacklogFull:
    """Create ``new`` unless the runner's backlog is full: (the run, whether it is new, the
    depth with it), or the refusal. The trigger routes and the dashboard's run form share it."""
    backlog = ctx.backlog
    depth = await backlog.depth()
    metrics = ctx.runner.metrics
    if not backlog.is_full(depth):
        began = time.perf_counter()
        run, created = await ctx.store.create_flow_run(new)
        if metrics is not None:
            metrics.created_run(new.deployment_id, time.perf_counter() - began, created=created)
    elif new.idempotency_key and (known := await ctx.store.read_flow_run_by_key(new)):
        run, created = known, False  # a repeated request asks for no new run: no 429
    else:
        if metrics is not None:
            metrics.rejected.inc()
        return backlog.full(depth)
    if created:
        backlog.queued()
        depth += 1  # the store's change feed has woken the runners of this database
    return run, created, depth


async def _waited(
    ctx: ServerContext, run: FlowRun, wait: float, headers: dict[str, str], *, id_only: bool
) -> Response:
    run = await wait_for_end(ctx.store, run.id, wait, lambda: ctx.closing)
    body = run_json(run, flow_run_id=str(run.id)) if id_only else run_json(run)
    if run.state.is_terminal:
        return json_response(body, 200, headers)
    headers["Location"] = f"/flow_runs/{run.id}"
    return json_response(body, 202, headers)

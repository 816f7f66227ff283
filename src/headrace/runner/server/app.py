"""The webserver app: built over an injected runner, its routes fixed when it is built.

``build_server`` adds the runner's own routes (``/health``, ``/ready``,
``/run_count``, ``/shutdown``), the trigger routes (one per served deployment, plus
``/flow/run``), the run routes, the API-key and body-size gate, and the map
from headrace's errors to HTTP status codes: status codes are decided here,
and only here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from headrace._version import __version__
from headrace.client import HeadraceClient
from headrace.exceptions import (
    EntrypointError,
    IdempotencyKeyReused,
    InvalidStateTransition,
    ObjectNotFound,
    ParameterValidationError,
    StoreError,
    StoreFull,
    StoreTimeout,
    StoreUnavailable,
)
from headrace.runner.server.backlog import Backlog
from headrace.runner.server.context import ServerContext
from headrace.runner.server.hosts import allowed_hosts, allowed_origins
from headrace.runner.server.import_space import collect_import_space
from headrace.runner.server.json_io import BadRequestBody, json_response, message, raw_json_response
from headrace.runner.server.metrics import TimedRequests, add_metrics_route
from headrace.runner.server.middleware import Guard
from headrace.runner.server.openapi import RunnerApp, add_docs, deployment_body
from headrace.runner.server.readiness import Readiness
from headrace.runner.server.run_results import add_result_routes
from headrace.runner.server.runs import add_run_routes, deployments_json, run_path
from headrace.runner.server.triggers import (
    TRIGGER_RESPONSES,
    FlowRunRequest,
    deployment_endpoint,
    flow_endpoint,
)
from headrace.states import utcnow
from headrace.store import bounded_waits

if TYPE_CHECKING:
    from headrace.runner.runner import Runner

logger = logging.getLogger(__name__)

STORE_RETRY_AFTER_SECONDS = 5
STORE_FULL = "The database is full (no space left)"
OK = b'{"message":"OK"}'
UNRESPONSIVE = b'{"message":"Runner is unresponsive at this time"}'


async def get_subflow_schemas(runner: Runner) -> dict[str, dict[str, Any]]:
    """Flow name -> parameter schema, for every flow in the import space of the runner's
    deployments' entrypoints (the flows ``POST /flow/run`` may start)."""
    return collect_import_space(runner.deployments.values(), runner.flows.values()).schemas


async def build_server(runner: Runner) -> FastAPI:
    """Build the webserver app for ``runner``: its routes are fixed now, one per deployment."""
    settings = runner.settings
    ctx = ServerContext(
        runner=runner,
        client=HeadraceClient(runner.store, settings),
        store=runner.store,
        settings=settings,
        backlog=Backlog(runner, settings.runner_backlog_limit),
        space=collect_import_space(runner.deployments.values(), runner.flows.values()),
        deployments_json=deployments_json(runner.deployments.values()),
    )
    app = RunnerApp(
        title="headrace runner",
        version=__version__,
        description=f"The webserver of runner {runner.name!r}.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.headrace = ctx
    app.request_bodies = {}
    app.key_required = bool(settings.api_key)
    add_docs(app)
    _add_runner_routes(app, ctx)
    _add_trigger_routes(app, ctx)
    add_run_routes(app)
    add_result_routes(app)
    _add_error_handlers(app)
    app.add_middleware(BoundedStoreWaits)
    metrics = runner.metrics
    if metrics is not None:
        metrics.queued = ctx.backlog.estimate
        add_metrics_route(app, metrics)
        app.add_middleware(TimedRequests, http=metrics.http)
    app.add_middleware(
        Guard,
        api_key=settings.api_key,
        allowed_hosts=allowed_hosts(settings),
        allowed_origins=allowed_origins(settings),
    )
    return app


def _add_runner_routes(app: FastAPI, ctx: ServerContext) -> None:
    runner = ctx.runner
    tolerance = ctx.settings.runner_server_missed_polls_tolerance

    async def perform_health_check() -> Response:
        """200 while the runner polls; 503 once its last poll is older than
        MISSED_POLLS_TOLERANCE poll intervals."""
        last = runner.last_polled
        stale_after = tolerance * runner.query_seconds
        if last is None or (utcnow() - last).total_seconds() > stale_after:
            return raw_json_response(UNRESPONSIVE, 503)
        return raw_json_response(OK)

    readiness = Readiness(ctx)

    async def ready() -> Response:
        """200 while the database answers and the runner is not draining; else 503."""
        problem = await readiness.problem()
        if problem is not None:
            return message(problem, 503, {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})
        return raw_json_response(OK)

    async def run_count() -> Response:
        """How many flow runs this runner is executing now."""
        return raw_json_response(str(runner.running_count))

    async def shutdown() -> Response:
        """Stop the runner gracefully, once this answer has been sent."""
        return Response(OK, media_type="application/json", background=BackgroundTask(_stop, ctx))

    app.add_api_route("/health", perform_health_check, methods=["GET"], tags=["runner"])
    # Load balancers often probe with HEAD.
    app.add_api_route("/health", perform_health_check, methods=["HEAD"], include_in_schema=False)
    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"description": "The database does not answer, or the runner drains"}
    }
    app.add_api_route("/ready", ready, methods=["GET"], tags=["runner"], responses=not_ready)
    app.add_api_route("/ready", ready, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/run_count", run_count, methods=["GET"], tags=["runner"])
    app.add_api_route("/shutdown", shutdown, methods=["POST"], tags=["runner"])


class BoundedStoreWaits:
    """Every store call of a request waits at most ``HEADRACE_DATABASE_TIMEOUT_SECONDS``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with bounded_waits():
            await self.app(scope, receive, send)


async def _stop(ctx: ServerContext) -> None:
    logger.warning("Shutdown requested over HTTP: draining, then stopping")
    with contextlib.suppress(RuntimeError):  # the runner was never started, or has ended
        ctx.runner.execute_in_background(ctx.runner.stop)
    if ctx.stop_server is not None:
        ctx.stop_server()


def _add_trigger_routes(app: RunnerApp, ctx: ServerContext) -> None:
    for deployment in ctx.runner.deployments.values():
        path = run_path(deployment.id)
        app.add_api_route(
            path,
            deployment_endpoint(ctx, deployment),
            methods=["POST"],
            status_code=201,
            name=f"Run {deployment.name}",
            summary=f"Run {deployment.flow_name}/{deployment.name}",
            description=deployment.description
            or "Queue a run; the body's parameters are merged over the deployment's defaults.",
            tags=["deployments"],
            responses={**TRIGGER_RESPONSES, 404: {"description": "Unknown deployment"}},
        )
        app.request_bodies[path] = deployment_body(deployment)
    app.add_api_route(
        "/flow/run",
        flow_endpoint(ctx),
        methods=["POST"],
        status_code=201,
        name="Run flow in background",
        summary="Run flow",
        description="Trigger any flow in the served deployments' import space as a run "
        "on this runner.",
        tags=["flows"],
        responses={
            **TRIGGER_RESPONSES,
            403: {"description": "The flow is outside the served deployments' import space"},
            404: {"description": "The entrypoint cannot be loaded or is not a flow"},
        },
    )
    app.request_bodies["/flow/run"] = FlowRunRequest.model_json_schema()


# -- errors -> status codes --------------------------------------------------

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _add_error_handlers(app: FastAPI) -> None:
    handlers: dict[type[Exception], Handler] = {
        ObjectNotFound: _status(404),
        InvalidStateTransition: _status(409),
        IdempotencyKeyReused: _status(422),
        BadRequestBody: _status(400),
        EntrypointError: _flow_not_found,
        ParameterValidationError: _invalid_parameters,
        StoreError: _store_failed,
        StarletteHTTPException: _http_error,
        ClientDisconnect: _client_gone,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)


REPORTED_ERRORS = 100
REPORTED_NAME_LENGTH = 200


def _status(status_code: int) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        return message(str(exc), status_code)

    return handle


async def _flow_not_found(request: Request, exc: Exception) -> Response:
    return message("Flow not found", 404)


async def _invalid_parameters(request: Request, exc: Exception) -> Response:
    """400 naming each bad parameter: the first ``REPORTED_ERRORS`` of them, names shortened.

    A hostile body (thousands of unknown keys, a key of a megabyte) gets a short answer.
    """
    assert isinstance(exc, ParameterValidationError)
    errors = [
        {**error, "parameter": str(error["parameter"])[:REPORTED_NAME_LENGTH]}
        for error in exc.errors[:REPORTED_ERRORS]
    ]
    text = str(exc) if errors == exc.errors else str(ParameterValidationError(errors))
    if len(exc.errors) > len(errors):
        text += f"; and {len(exc.errors) - len(errors)} more"
    return json_response({"message": text, "errors": errors}, 400)


async def _store_failed(request: Request, exc: Exception) -> Response:
    """503 (retry later) while the database fails; 507 once it has no space left, which no
    retry mends until someone frees space."""
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    if isinstance(exc, StoreFull):
        return message(STORE_FULL, 507)
    if isinstance(exc, StoreTimeout):
        text = str(exc)  # says whether the request's write may still be done
    elif isinstance(exc, StoreUnavailable):
        text = "The database cannot be reached"
    else:
        text = "The database operation failed"
    return message(text, 503, {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that hangs up mid-body is its own business: one line, no traceback."""
    logger.info(
        "%s %s: the client disconnected before its request ended", request.method, request.url.path
    )
    return Response(status_code=400)  # nobody is left to read it


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    text = str(exc.detail)
    path = request.url.path
    if exc.status_code == 404 and path.startswith("/deployment/") and path.endswith("/run"):
        text = "Deployment not found"
    return message(text, exc.status_code, dict(exc.headers or {}))

"""The webserver app: built over an injected runner, its routes fixed when it is built.

``build_server`` adds the runner's own routes (``/health``, ``/ready``,
``/run_count``, ``/shutdown``), the trigger routes (one per served deployment, plus
``/flow/run``), the run routes, the dashboard, the API-key and body-size gate,
and the map from headrace's errors to HTTP status codes (``errors``).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.responses import Response

from headrace._version import __version__
from headrace.client import HeadraceClient
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.runner.server.access_log import AccessLog
from headrace.runner.server.backlog import Backlog, BacklogFull
from headrace.runner.server.context import ServerContext
from headrace.runner.server.errors import (
    STORE_RETRY_AFTER_SECONDS,
    BoundedStoreWaits,
    add_error_handlers,
)
from headrace.runner.server.hosts import allowed_hosts, allowed_origins
from headrace.runner.server.import_space import collect_import_space
from headrace.runner.server.json_io import message, raw_json_response
from headrace.runner.server.metrics import TimedRequests, add_metrics_route
from headrace.runner.server.middleware import Guard
from headrace.runner.server.openapi import RunnerApp, add_docs, deployment_body
from headrace.runner.server.readiness import Readiness
from headrace.runner.server.run_changes import add_change_routes
from headrace.runner.server.run_results import add_result_routes
from headrace.runner.server.runs import add_run_routes, deployments_json, run_path
from headrace.runner.server.task_runs import add_task_run_routes
from headrace.runner.server.triggers import (
    TRIGGER_RESPONSES,
    FlowRunRequest,
    admit,
    deployment_endpoint,
    flow_endpoint,
)
from headrace.runner.server.ui import Dashboard, add_dashboard
from headrace.runner.server.ui.live import LiveRuns
from headrace.states import utcnow

if TYPE_CHECKING:
    from headrace.runner.runner import Runner

logger = logging.getLogger(__name__)

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
    add_change_routes(app)
    add_task_run_routes(app)
    add_result_routes(app)
    add_dashboard(app, _dashboard(runner, ctx))
    add_error_handlers(app)
    _add_middleware(app, ctx)
    return app


def _add_middleware(app: FastAPI, ctx: ServerContext) -> None:
    """Innermost first: store waits, request timing, the gate, the access log."""
    settings = ctx.settings
    app.add_middleware(BoundedStoreWaits)
    metrics = ctx.runner.metrics
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
    if settings.runner_server_access_log:
        app.add_middleware(AccessLog)


def _dashboard(runner: Runner, ctx: ServerContext) -> Dashboard:
    """The dashboard over the runner's database; the runner's flows check its run forms."""
    return Dashboard(
        store=runner.store,
        settings=runner.settings,
        live=LiveRuns(runner.store),
        flows=dict(runner.flows),
        local_runner=lambda: runner.record.id,
        queue=lambda new: _admitted_run(ctx, new),
        closing=lambda: ctx.closing,
    )


async def _admitted_run(ctx: ServerContext, new: NewFlowRun) -> FlowRun | BacklogFull:
    """A run form's run, through the trigger routes' backlog check."""
    admitted = await admit(ctx, new)
    return admitted if isinstance(admitted, BacklogFull) else admitted[0]


def _add_runner_routes(app: FastAPI, ctx: ServerContext) -> None:
    runner = ctx.runner
    tolerance = ctx.settings.runner_server_missed_polls_tolerance

    async def perform_health_check() -> Response:
        """200 while the runner polls (or drains: its poll stopped on purpose); 503 once its
        last poll is older than MISSED_POLLS_TOLERANCE poll intervals."""
        last = runner.last_polled
        stale_after = tolerance * runner.query_seconds
        if runner.draining and last is not None:
            return raw_json_response(OK)  # restarting it now would kill the runs it finishes
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


async def _stop(ctx: ServerContext) -> None:
    if ctx.runner.draining:  # unlike a second SIGTERM, it does not hurry the drain
        logger.warning("Shutdown requested over HTTP again: the runner is already draining")
        return
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

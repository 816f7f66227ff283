"""The runner webserver: an app factory over an injected runner, and two ways to serve it.

=========================================  =============================================
``GET /health``                            200, or 503 once the poll loop has stalled
``GET /run_count``                         runs executing now
``POST /shutdown``                         answer, then stop the runner gracefully
``POST /deployment/{id}/run``              one route per served deployment
``POST /flow/run``                         any flow in the deployments' import space
``GET /flow_runs``, ``/flow_runs/{id}``    listing and status
``POST /flow_runs/{id}/cancel``            cancellation
``GET /flow_runs/{id}/logs``               logs as JSON, or followed as Server-Sent Events
``GET /deployments``                       the served deployments
=========================================  =============================================

``serve_in_loop`` runs uvicorn inside the runner's own event loop (what
``Runner(webserver=True)`` uses); ``start_webserver`` blocks, serving the app
on its own. HTTP status codes for headrace's errors are decided here, and only
here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from headrace.exceptions import (
    ConfigurationError,
    EntrypointError,
    InvalidStateTransition,
    ObjectNotFound,
    ParameterValidationError,
    StoreError,
    StoreUnavailable,
)
from headrace.runner.server.backlog import Backlog
from headrace.runner.server.context import ServerContext
from headrace.runner.server.import_space import collect_import_space
from headrace.runner.server.json_io import BadRequestBody, json_response, message, raw_json_response
from headrace.runner.server.middleware import Guard
from headrace.runner.server.openapi import RunnerApp
from headrace.runner.server.runs import deployments_router, run_path, run_router
from headrace.runner.server.triggers import (
    TRIGGER_RESPONSES,
    FlowRunRequest,
    deployment_endpoint,
    flow_endpoint,
)
from headrace.states import utcnow

if TYPE_CHECKING:
    from headrace.runner.runner import Runner
    from headrace.settings import Settings

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5
STARTUP_TIMEOUT_SECONDS = 30.0
STORE_RETRY_AFTER_SECONDS = 5
OK = b'{"message":"OK"}'
UNRESPONSIVE = b'{"message":"Runner is unresponsive at this time"}'
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


async def get_subflow_schemas(runner: Runner) -> dict[str, dict[str, Any]]:
    """Flow name -> parameter schema, for every flow in the import space of the runner's
    deployments' entrypoints (the flows ``POST /flow/run`` may start)."""
    return collect_import_space(runner.deployments.values(), runner.flows.values()).schemas


async def build_server(runner: Runner) -> FastAPI:
    """Build the webserver app for ``runner``: its routes are fixed now, one per deployment."""
    from headrace._version import __version__

    settings = runner.settings
    ctx = ServerContext(
        runner=runner,
        store=runner.store,
        settings=settings,
        backlog=Backlog(runner, settings.runner_backlog_limit),
        space=collect_import_space(runner.deployments.values(), runner.flows.values()),
    )
    app = RunnerApp(
        title="headrace runner",
        version=__version__,
        description=f"The webserver of runner {runner.name!r}.",
        redoc_url=None,
    )
    app.state.headrace = ctx
    app.request_bodies = {}
    _add_runner_routes(app, ctx)
    _add_trigger_routes(app, ctx)
    app.include_router(run_router(ctx))
    app.include_router(deployments_router(ctx))
    _add_error_handlers(app)
    app.add_middleware(Guard, api_key=settings.api_key)
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

    async def run_count() -> Response:
        """How many flow runs this runner is executing now."""
        return raw_json_response(str(runner.running_count))

    async def shutdown() -> Response:
        """Stop the runner gracefully, once this answer has been sent."""
        return Response(OK, media_type="application/json", background=BackgroundTask(_stop, ctx))

    app.add_api_route("/health", perform_health_check, methods=["GET"], tags=["runner"])
    # Load balancers often probe with HEAD.
    app.add_api_route("/health", perform_health_check, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/run_count", run_count, methods=["GET"], tags=["runner"])
    app.add_api_route("/shutdown", shutdown, methods=["POST"], tags=["runner"])


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
        app.request_bodies[path] = deployment.parameter_schema
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
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": FlowRunRequest.model_json_schema()}},
            }
        },
    )


# -- errors -> status codes --------------------------------------------------

Handler = Callable[[Request, Exception], Awaitable[Response]]


def _add_error_handlers(app: FastAPI) -> None:
    handlers: dict[type[Exception], Handler] = {
        ObjectNotFound: _status(404),
        InvalidStateTransition: _status(409),
        BadRequestBody: _status(400),
        EntrypointError: _flow_not_found,
        ParameterValidationError: _invalid_parameters,
        StoreError: _store_failed,
        StarletteHTTPException: _http_error,
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
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    text = (
        "The database cannot be reached"
        if isinstance(exc, StoreUnavailable)
        else "The database operation failed"
    )
    return message(text, 503, {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    text = str(exc.detail)
    path = request.url.path
    if exc.status_code == 404 and path.startswith("/deployment/") and path.endswith("/run"):
        text = "Deployment not found"
    return message(text, exc.status_code, dict(exc.headers or {}))


# -- serving -------------------------------------------------------------------


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the runner's loop: the runner, not uvicorn, handles signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None


def _config(
    app: FastAPI, runner: Runner, log_level: str | None, *, embedded: bool
) -> uvicorn.Config:
    settings = runner.settings
    options: dict[str, Any] = {"log_config": None} if embedded else {}
    return uvicorn.Config(
        app,
        host=settings.runner_server_host,
        port=settings.runner_server_port,
        log_level=log_level or settings.runner_server_log_level,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )


async def serve_in_loop(runner: Runner) -> asyncio.Task[None]:
    """Serve the webserver in the running loop; return once it listens.

    Cancelling the returned task shuts uvicorn down gracefully (open log
    streams and waits end first).
    """
    app = await build_server(runner)
    ctx: ServerContext = app.state.headrace
    server = _EmbeddedServer(_config(app, runner, None, embedded=True))
    _warn_if_exposed(runner)
    task = asyncio.get_running_loop().create_task(
        _serve_until_cancelled(server, ctx), name="headrace-webserver"
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if task.done():
            task.result()
            raise ConfigurationError("The runner webserver stopped before it started")
        if time.monotonic() > deadline:
            task.cancel()
            raise ConfigurationError("The runner webserver did not start in time")
        await asyncio.sleep(0.005)
    if runner.settings.runner_server_port == 0:  # a port of the system's choosing: say which
        port = _bound_port(server)
        runner.settings = runner.settings.model_copy(update={"runner_server_port": port})
    logger.info("Runner webserver listening on %s", _address(server))
    return task


async def _serve_until_cancelled(server: uvicorn.Server, ctx: ServerContext) -> None:
    serving = asyncio.ensure_future(_serve(server))
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        ctx.closing = True
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, timeout=GRACEFUL_SHUTDOWN_SECONDS + 5)
        raise


async def _serve(server: uvicorn.Server) -> None:
    config = server.config
    try:
        await server.serve()
    except SystemExit as exc:  # uvicorn exits the process when it cannot bind
        raise ConfigurationError(
            f"The runner webserver could not listen on {config.host}:{config.port} (see the "
            "error above); choose another with --host/--port or HEADRACE_RUNNER_SERVER_HOST/PORT"
        ) from exc


def check_can_listen(settings: Settings) -> None:
    """Fail now if the webserver could not listen: before a deployment is registered.

    A serve that cannot bind must leave the store as it found it (a running
    runner may serve the same deployment). The port is bound and released at
    once; only a race with another process can still take it.
    """
    host, port = settings.runner_server_host, settings.runner_server_port
    where = f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            probe.bind(address)
    except OSError as exc:
        raise ConfigurationError(
            f"The runner webserver cannot listen on {where}: {exc.strerror or exc}; "
            "choose another with --host/--port or HEADRACE_RUNNER_SERVER_HOST/PORT"
        ) from None


def start_webserver(runner: Runner, log_level: str | None = None) -> None:
    """Run the webserver for ``runner`` until interrupted or ``POST /shutdown`` (blocks).

    Serves on ``HEADRACE_RUNNER_SERVER_HOST``/``PORT`` with ``LOG_LEVEL`` unless
    ``log_level`` is given. The runner itself may run in another thread.
    Ctrl-C stops it and returns, as ``uvicorn.run`` does.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_standalone(runner, log_level))


async def _serve_standalone(runner: Runner, log_level: str | None) -> None:
    app = await build_server(runner)
    ctx: ServerContext = app.state.headrace
    server = uvicorn.Server(_config(app, runner, log_level, embedded=False))

    def stop_server() -> None:
        server.should_exit = True

    ctx.stop_server = stop_server
    _warn_if_exposed(runner)
    try:
        await _serve(server)
    finally:
        ctx.closing = True


def _warn_if_exposed(runner: Runner) -> None:
    host = runner.settings.runner_server_host
    if runner.settings.api_key or _is_loopback(host):
        return
    logger.warning(
        "The runner webserver listens on %r without an API key: anyone who can reach it "
        "can run flows. Set HEADRACE_API_KEY, or bind localhost.",
        host,
    )


def _is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _address(server: uvicorn.Server) -> str:
    return f"http://{server.config.host}:{_bound_port(server)}"


def _bound_port(server: uvicorn.Server) -> int:
    port: int = server.config.port
    with contextlib.suppress(AttributeError, IndexError, TypeError):
        port = server.servers[0].sockets[0].getsockname()[1]
    return port

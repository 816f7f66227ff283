"""``headrace ui``: the dashboard and the HTTP API's read, trigger and cancel routes over a
database, executing nothing.

The runs it creates wait in the database, where the runners serving their
deployments claim them (the store's change feed wakes them at once). With no
runner here, a trigger is checked against the deployment's stored parameter
schema, as every process but the serving runner checks it, and against the
backlogs of the runners serving the deployment (``stored_backlogs``): a run
triggered here is refused (429) when theirs are full, as their own webservers
would refuse it, so that this door does not get around their limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator
from uuid import UUID

import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from headrace import new_runs
from headrace._version import __version__
from headrace.client import HeadraceClient
from headrace.exceptions import ConfigurationError
from headrace.flow_runs import FlowRun, NewFlowRun
from headrace.runner.server.backlog import BacklogFull
from headrace.runner.server.context import StoreContext
from headrace.runner.server.errors import BoundedStoreWaits, add_error_handlers
from headrace.runner.server.hosts import allowed_hosts, allowed_origins
from headrace.runner.server.json_io import json_response, message, raw_json_response, run_json
from headrace.runner.server.middleware import Guard
from headrace.runner.server.run_changes import add_change_routes
from headrace.runner.server.run_results import add_result_routes
from headrace.runner.server.runs import add_run_routes
from headrace.runner.server.stored_backlogs import StoredBacklogs
from headrace.runner.server.task_runs import add_task_run_routes
from headrace.runner.server.triggers import (
    TRIGGER_RESPONSES,
    Endpoint,
    IdempotencyKey,
    Wait,
    read_parameters,
)
from headrace.runner.server.ui import Dashboard, add_dashboard
from headrace.runner.server.ui.live import LiveRuns
from headrace.runner.server.watch import wait_for_end
from headrace.settings import Settings
from headrace.store import AsyncStore

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _StoppableServer(uvicorn.Server):
    """Stops gracefully on SIGINT or SIGTERM (a second one forces it), then returns as
    usual: uvicorn would raise the signal again, and the process would die of it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._stop)
        try:
            yield
        finally:
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return None

    def _stop(self) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


def build_dashboard_server(store: AsyncStore, settings: Settings) -> FastAPI:
    """The dashboard app over ``store``: pages, ``/flow_runs...`` (with a run's task runs,
    result and notifications, which ``headrace runs inspect`` reads), ``/deployments`` and
    ``POST /deployment/{id}/run`` for every deployment of the database."""
    ctx = StoreContext(client=HeadraceClient(store, settings), store=store, settings=settings)
    backlogs = StoredBacklogs(store, settings)
    app = FastAPI(
        title="headrace dashboard",
        version=__version__,
        description="The dashboard and HTTP API over a headrace database.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.headrace = ctx
    add_run_routes(app)  # with /flow_runs/{id}/notifications
    add_change_routes(app)
    add_task_run_routes(app)
    add_result_routes(app)
    app.add_api_route(
        "/deployment/{deployment_id}/run",
        _trigger_endpoint(ctx, backlogs),
        methods=["POST"],
        status_code=201,
        summary="Run a deployment",
        description="Queue a run; the runners serving the deployment pick it up.",
        tags=["deployments"],
        responses={**TRIGGER_RESPONSES, 404: {"description": "Unknown deployment"}},
    )
    live = LiveRuns(store, watch_feed=True)  # no runner here watches the database
    dash = Dashboard(
        store=store,
        settings=settings,
        live=live,
        queue=lambda new: _form_run(store, backlogs, new),
        closing=lambda: ctx.closing,
    )
    add_dashboard(app, dash)
    add_error_handlers(app)
    app.add_middleware(BoundedStoreWaits)
    app.add_middleware(
        Guard,
        api_key=settings.api_key,
        allowed_hosts=allowed_hosts(settings),
        allowed_origins=allowed_origins(settings),
    )
    return app


async def _queued(
    store: AsyncStore, backlogs: StoredBacklogs, new: NewFlowRun
) -> tuple[FlowRun, bool] | BacklogFull:
    """Create ``new`` unless the backlogs of the runners serving its deployment are full; a
    known Idempotency-Key gets its run all the same (it asks for no new one)."""
    assert new.deployment_id is not None
    full = await backlogs.refusal(new.deployment_id)
    if full is None:
        return await store.create_flow_run(new)
    if new.idempotency_key and (known := await store.read_flow_run_by_key(new)):
        return known, False
    return full


async def _form_run(
    store: AsyncStore, backlogs: StoredBacklogs, new: NewFlowRun
) -> FlowRun | BacklogFull:
    queued = await _queued(store, backlogs, new)
    return queued if isinstance(queued, BacklogFull) else queued[0]


def _trigger_endpoint(ctx: StoreContext, backlogs: StoredBacklogs) -> Endpoint:
    async def run_deployment(
        request: Request,
        deployment_id: UUID,
        wait: Wait = None,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        deployment = await ctx.store.read_deployment(deployment_id)
        parameters = await read_parameters(request, empty={})
        new = new_runs.for_deployment(deployment, parameters, idempotency_key=idempotency_key)
        queued = await _queued(ctx.store, backlogs, new)
        if isinstance(queued, BacklogFull):
            return message(f"{queued.message}; retry later", 429, queued.headers)
        run, created = queued
        status = 201 if created else 200
        if wait is None:
            return raw_json_response(f'{{"flow_run_id":"{run.id}"}}', status)
        run = await wait_for_end(ctx.store, run.id, wait, lambda: ctx.closing)
        body = run_json(run, flow_run_id=str(run.id))
        if run.state.is_terminal:
            return json_response(body, 200)
        return json_response(body, 202, {"Location": f"/flow_runs/{run.id}"})

    return run_deployment


async def serve_dashboard(
    store: AsyncStore, settings: Settings, ready: Callable[[str], None] | None = None
) -> None:
    """Serve the dashboard on the settings' host and port until interrupted; ``ready`` gets
    its address once it listens."""
    app = build_dashboard_server(store, settings)
    ctx: StoreContext = app.state.headrace
    dash: Dashboard = app.state.dashboard
    config = uvicorn.Config(
        app,
        host=settings.runner_server_host,
        port=settings.runner_server_port,
        log_level=settings.runner_server_log_level,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _StoppableServer(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if serving.done():
                break
            await asyncio.sleep(0.01)
        if server.started and ready is not None:
            port = server.servers[0].sockets[0].getsockname()[1]
            ready(f"http://{_url_host(settings.runner_server_host)}:{port}")
        await serving
    except SystemExit as exc:  # uvicorn exits the process when it cannot bind
        raise ConfigurationError(
            f"The dashboard could not listen on {config.host}:{config.port} (see the error "
            "above); choose another with --host/--port"
        ) from exc
    finally:
        if not serving.done():
            server.should_exit = True
            with contextlib.suppress(BaseException):
                await serving
        ctx.closing = True
        with contextlib.suppress(asyncio.CancelledError):
            await dash.live.close()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "localhost"
    return f"[{host}]" if ":" in host else host

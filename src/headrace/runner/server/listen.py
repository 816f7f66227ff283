"""Serving the webserver with uvicorn: inside the runner's loop, or on its own.

``serve_in_loop`` runs uvicorn inside the runner's own event loop (what
``Runner(webserver=True)`` uses); ``start_webserver`` blocks, serving the app
on its own. ``check_can_listen`` fails before anything is registered when the
port cannot be had, and a server reachable beyond loopback without an API key
is warned about.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI

from headrace.exceptions import ConfigurationError
from headrace.runner.server.app import build_server
from headrace.runner.server.connections import bounded_protocol, connection_limit
from headrace.runner.server.context import ServerContext
from headrace.runner.server.hosts import is_loopback

if TYPE_CHECKING:
    from headrace.runner.runner import Runner
    from headrace.settings import Settings

logger = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_SECONDS = 5
STARTUP_TIMEOUT_SECONDS = 30.0


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
    limit = connection_limit(settings, runner.limit)
    return uvicorn.Config(
        app,
        host=settings.runner_server_host,
        port=settings.runner_server_port,
        log_level=log_level or settings.runner_server_log_level,
        lifespan="off",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        http=bounded_protocol(limit),
        limit_concurrency=limit,
        timeout_keep_alive=settings.runner_server_keep_alive_seconds,
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
    if runner.settings.api_key or is_loopback(host):
        return
    logger.warning(
        "The runner webserver listens on %r without an API key: anyone who can reach it "
        "can run flows. Set HEADRACE_API_KEY, or bind localhost.",
        host,
    )


def _address(server: uvicorn.Server) -> str:
    return f"http://{server.config.host}:{_bound_port(server)}"


def _bound_port(server: uvicorn.Server) -> int:
    port: int = server.config.port
    with contextlib.suppress(AttributeError, IndexError, TypeError):
        port = server.servers[0].sockets[0].getsockname()[1]
    return port

"""The access log (``HEADRACE_RUNNER_SERVER_ACCESS_LOG=true``): one line per request.

Each line names the method, the path, the status and how long the answer took,
and carries the route template (``/flow_runs/{flow_run_id}``) as a field, so a
JSON log can be grouped by route. It wraps the whole webserver: requests
refused for their host, origin or key are logged too.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headrace.runner.server.metrics import UNMATCHED

logger = logging.getLogger("headrace.access")


class AccessLog:
    """Logs each HTTP request once its response has been sent (or has failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def noted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted_send)
        finally:
            _log(scope, status, time.perf_counter() - began)


def _log(scope: Scope, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", None) or UNMATCHED
    client = scope.get("client")
    milliseconds = round(seconds * 1000, 2)
    logger.info(
        "%s %s %d %.1fms",
        scope["method"],
        scope["path"],
        status,
        milliseconds,
        extra={
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": milliseconds,
            "client": None if client is None else client[0],
        },
    )

"""The access log (``HEADRACE_RUNNER_SERVER_ACCESS_LOG=true``): one line per request.

Each line names the method, the path, the status and how long the answer took,
and carries the route template (``/flow_runs/{flow_run_id}``) as a field, so a
JSON log can be grouped by route. It wraps the whole webserver: requests
refused for their host, origin or key are logged too.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from headrace.runner.server.request_end import AfterEachRequest, route_template

logger = logging.getLogger("headrace.access")


class AccessLog(AfterEachRequest):
    """Logs each HTTP request once its response has been sent (or has failed)."""

    def ended(self, scope: Scope, status: int, seconds: float) -> None:
        _log(scope, status, seconds)


def _log(scope: Scope, status: int, seconds: float) -> None:
    route = route_template(scope)
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

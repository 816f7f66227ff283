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

``app`` builds the app (``build_server``) and maps errors to status codes;
``listen`` serves it with uvicorn, embedded in the runner's loop
(``serve_in_loop``) or on its own (``start_webserver``). ``triggers`` and
``runs`` hold the routes, ``json_io`` and ``middleware`` what every request
passes through. This is the only package that imports FastAPI, Starlette or uvicorn.
"""

from __future__ import annotations

from headrace.runner.server.app import build_server, get_subflow_schemas
from headrace.runner.server.listen import check_can_listen, serve_in_loop, start_webserver

__all__ = [
    "build_server",
    "check_can_listen",
    "get_subflow_schemas",
    "serve_in_loop",
    "start_webserver",
]

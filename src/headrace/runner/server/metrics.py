"""``GET /metrics`` and the timing of every request, by route template.

A request is labelled with the template of the route that answered it
(``/flow_runs/{flow_run_id}``), never its raw path: one series per route, however
many runs there are. A request no route matched is ``<unmatched>``.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headrace.runner.metrics import CONTENT_TYPE, HttpMetrics, RunnerMetrics

UNMATCHED = "<unmatched>"


def add_metrics_route(app: FastAPI, metrics: RunnerMetrics) -> None:
    """``GET /metrics``: the runner's registry in Prometheus text format."""

    async def read_metrics() -> Response:
        """The runner's counters, gauges and histograms (Prometheus text format)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    app.add_api_route(
        "/metrics",
        read_metrics,
        methods=["GET"],
        tags=["runner"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}}},
    )


class TimedRequests:
    """Times each HTTP request to the end of its response body."""

    def __init__(self, app: ASGIApp, http: HttpMetrics) -> None:
        self.app = app
        self._http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            self._http.observe(scope["method"], template, status, time.perf_counter() - began)

"""``GET /metrics`` and the timing of every request, by route template.

A request is labelled with the template of the route that answered it
(``/flow_runs/{flow_run_id}``), never its raw path: one series per route, however
many runs there are. A request no route matched is ``<unmatched>``.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Scope

from headrace.runner.metrics import CONTENT_TYPE, HttpMetrics, RunnerMetrics
from headrace.runner.server.request_end import AfterEachRequest, route_template


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


class TimedRequests(AfterEachRequest):
    """Times each HTTP request to the end of its response body."""

    def __init__(self, app: ASGIApp, http: HttpMetrics) -> None:
        super().__init__(app)
        self._http = http

    def ended(self, scope: Scope, status: int, seconds: float) -> None:
        self._http.observe(scope["method"], route_template(scope), status, seconds)

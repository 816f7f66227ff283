"""One ASGI wrapper for what must happen once each HTTP request has been answered.

The request metrics and the access log both want the response's status, how long
the answer took and the route template that answered, whether the response was
sent or failed half-way (a failure counts as 500).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"
"""The route template of a request no route matched."""


def route_template(scope: Scope) -> str:
    """``/flow_runs/{flow_run_id}``, never the raw path: one series or group per route."""
    return getattr(scope.get("route"), "path", None) or UNMATCHED


class AfterEachRequest:
    """Calls ``ended(scope, status, seconds)`` once each HTTP request's answer is over."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def ended(self, scope: Scope, status: int, seconds: float) -> None:
        raise NotImplementedError

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
            self.ended(scope, status, time.perf_counter() - began)

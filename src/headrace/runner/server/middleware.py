"""The webserver's gate: the API key and the request size limit, before any route runs.

A plain ASGI middleware (no per-request task or body copy on the common path).
With ``HEADRACE_API_KEY`` set, every path but ``/health`` needs
``Authorization: Bearer <key>``, compared in constant time; unknown paths are
refused the same way, so the key also hides which routes exist. Bodies larger
than ``MAX_BODY_BYTES`` are refused with 413, by their ``Content-Length`` or,
for chunked uploads, while they arrive.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headrace.runner.server.json_io import message

MAX_BODY_BYTES = 1024 * 1024
OPEN_PATHS = frozenset({"/health"})
"""Paths anyone may call, key or not (load balancers probe them)."""
UNAUTHORIZED = "Missing or invalid API key: send `Authorization: Bearer <HEADRACE_API_KEY>`"


class Guard:
    """Refuse unauthenticated and oversized requests before they reach a route."""

    def __init__(
        self, app: ASGIApp, api_key: str | None = None, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self.app = app
        self._expected = f"bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
        authorization = b""
        length: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"content-length":
                length = value
        if (
            self._expected is not None
            and scope["path"] not in OPEN_PATHS
            and not self._authorized(authorization)
        ):
            refusal = message(UNAUTHORIZED, 401, {"WWW-Authenticate": "Bearer"})
            await refusal(scope, receive, send)
            return
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body_bytes:
                await message(self._too_large, 413)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        await self._buffered(scope, receive, send)

    def _authorized(self, authorization: bytes) -> bool:
        expected = self._expected
        assert expected is not None
        scheme, _, credentials = authorization.partition(b" ")
        given = scheme.lower() + b" " + credentials.strip()
        return hmac.compare_digest(given, expected)

    @property
    def _too_large(self) -> str:
        return f"The request body is larger than {self.max_body_bytes} bytes"

    async def _buffered(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No Content-Length (chunked, or no body): read up to the limit, then replay."""
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            received = await receive()
            if received["type"] != "http.request":
                break
            chunk = received.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await message(self._too_large, 413)(scope, receive, send)
                return
            chunks.append(chunk)
            if not received.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            if received["type"] != "http.request":  # the client left mid-body: say so
                return received
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)

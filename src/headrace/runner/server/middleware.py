"""The webserver's gate: Host, Origin, the API key and the size limit, before any route runs.

A plain ASGI middleware (no per-request task or body copy on the common path).
A ``Host`` outside ``allowed_hosts`` gets 400 (DNS rebinding); a POST whose
``Origin`` is neither the server's own nor in ``allowed_origins`` gets 403 (a
web page on this machine posting a form): see ``headrace.runner.server.hosts``.
With ``HEADRACE_API_KEY`` set, every path but ``/health`` needs
``Authorization: Bearer <key>``, compared in constant time; unknown paths are
refused the same way, so the key also hides which routes exist. The dashboard's
pages (``/`` and ``/ui/...``) also take the key from the ``headrace_key`` cookie
its login form sets; a browser without it is sent to that form. Bodies larger
than ``MAX_BODY_BYTES`` are refused with 413, by their ``Content-Length`` or,
for chunked uploads, while they arrive.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headrace.runner.server.hosts import host_name, same_origin
from headrace.runner.server.json_io import message
from headrace.runner.server.ui.auth import (
    KEY_COOKIE,
    is_open_ui_path,
    is_ui_path,
    key_from_cookie,
    login_redirect,
)

MAX_BODY_BYTES = 1024 * 1024
OPEN_PATHS = frozenset({"/health"})
"""Paths anyone may call, key or not (load balancers probe them)."""
UNAUTHORIZED = "Missing or invalid API key: send `Authorization: Bearer <HEADRACE_API_KEY>`"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing: no Origin check (a page cannot read the answer)."""
SHOWN_LENGTH = 200


class Guard:
    """Refuse foreign, cross-origin, unauthenticated and oversized requests before a route.

    ``allowed_hosts`` and ``allowed_origins`` are lowercase bytes as
    ``headrace.runner.server.hosts`` builds them; None allows any.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        allowed_hosts: frozenset[bytes] | None = None,
        allowed_origins: frozenset[bytes] | None = frozenset(),
    ) -> None:
        self.app = app
        self._expected = f"bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes
        self.allowed_hosts = allowed_hosts
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: Iterable[tuple[bytes, bytes]] = scope["headers"]
        authorization = host = cookie = b""
        length: bytes | None = None
        origin: bytes | None = None
        for name, value in headers:
            if name == b"authorization":
                authorization = value
            elif name == b"cookie":
                cookie = value
            elif name == b"content-length":
                length = value
            elif name == b"host":
                host = value
            elif name == b"origin":
                origin = value
        if not authorization and cookie and is_ui_path(scope["path"]):
            authorization = b"bearer " + _cookie_key(cookie)
        refusal = self._refusal(scope, host, origin, authorization)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body_bytes:
                await message(self._too_large, 413)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        await self._buffered(scope, receive, send)

    def _refusal(
        self, scope: Scope, host: bytes, origin: bytes | None, authorization: bytes
    ) -> Response | None:
        """400 for a Host not allowed, 403 for a foreign Origin, 401 without the key."""
        if self.allowed_hosts is not None and host_name(host) not in self.allowed_hosts:
            return message(_bad_host(host), 400)
        if (
            origin is not None
            and self.allowed_origins is not None
            and scope["method"] not in SAFE_METHODS
            and origin.lower() not in self.allowed_origins
            and not same_origin(origin, host)
        ):
            return message(_foreign_origin(origin), 403)
        path = scope["path"]
        if (
            self._expected is not None
            and path not in OPEN_PATHS
            and not is_open_ui_path(path)
            and not self._authorized(authorization)
        ):
            if is_ui_path(path) and scope["method"] in SAFE_METHODS:
                return login_redirect(path, scope.get("query_string", b""))
            return message(UNAUTHORIZED, 401, {"WWW-Authenticate": "Bearer"})
        return None

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


def _cookie_key(cookie: bytes) -> bytes:
    """The ``headrace_key`` cookie's value, or nothing."""
    for part in cookie.split(b";"):
        name, _, value = part.strip().partition(b"=")
        if name == KEY_COOKIE.encode():
            return key_from_cookie(value)
    return b""


def _bad_host(host: bytes) -> str:
    if not host:
        return "The request has no Host header"
    shown = host.decode("latin-1")[:SHOWN_LENGTH]
    return (
        f"Host {shown!r} is not allowed: this webserver answers only its own names; "
        "set HEADRACE_RUNNER_SERVER_ALLOWED_HOSTS to allow others"
    )


def _foreign_origin(origin: bytes) -> str:
    shown = origin.decode("latin-1")[:SHOWN_LENGTH]
    return (
        f"Cross-origin request refused: Origin {shown!r} is not this server's; "
        "set HEADRACE_RUNNER_SERVER_ALLOWED_ORIGINS to allow it"
    )

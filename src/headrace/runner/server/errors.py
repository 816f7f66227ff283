"""headrace's errors as HTTP answers, and the bound on every store wait of a request.

Status codes are decided here, and only here, for every app the package builds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from headrace.exceptions import (
    EntrypointError,
    IdempotencyKeyReused,
    InvalidStateTransition,
    ObjectNotFound,
    ParameterValidationError,
    StoreError,
    StoreFull,
    StoreTimeout,
    StoreUnavailable,
)
from headrace.runner.server.json_io import BadRequestBody, json_response, message
from headrace.runner.server.ui.http import page
from headrace.store import bounded_waits

logger = logging.getLogger(__name__)

STORE_RETRY_AFTER_SECONDS = 5
STORE_FULL = "The database is full (no space left)"


class BoundedStoreWaits:
    """Every store call of a request waits at most ``HEADRACE_DATABASE_TIMEOUT_SECONDS``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with bounded_waits():
            await self.app(scope, receive, send)


# -- errors -> status codes --------------------------------------------------

Handler = Callable[[Request, Exception], Awaitable[Response]]


def add_error_handlers(app: FastAPI) -> None:
    handlers: dict[type[Exception], Handler] = {
        ObjectNotFound: _not_found,
        InvalidStateTransition: _status(409),
        IdempotencyKeyReused: _status(422),
        BadRequestBody: _status(400),
        EntrypointError: _flow_not_found,
        ParameterValidationError: _invalid_parameters,
        StoreError: _store_failed,
        StarletteHTTPException: _http_error,
        ClientDisconnect: _client_gone,
        RequestValidationError: _invalid_request,
    }
    for exc_class, handler in handlers.items():
        app.add_exception_handler(exc_class, handler)


REPORTED_ERRORS = 100
REPORTED_NAME_LENGTH = 200


def _status(status_code: int) -> Handler:
    async def handle(request: Request, exc: Exception) -> Response:
        return message(str(exc), status_code)

    return handle


async def _not_found(request: Request, exc: Exception) -> Response:
    """404: a page saying so on the dashboard, a JSON message elsewhere."""
    dash = getattr(request.app.state, "dashboard", None)
    if dash is not None and request.url.path.startswith("/ui/"):
        return page(dash.render("not_found.html", text=str(exc)), 404)
    return message(str(exc), 404)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, except for a dashboard page whose address holds no id
    (``/ui/runs/nope``): a browser gets the page saying nothing is there."""
    assert isinstance(exc, RequestValidationError)
    dash = getattr(request.app.state, "dashboard", None)
    in_path = any(error.get("loc", ("",))[0] == "path" for error in exc.errors())
    if dash is not None and in_path and request.url.path.startswith("/ui/"):
        text = f"Nothing is at {request.url.path[:200]}: its id is not an id"
        return page(dash.render("not_found.html", text=text), 404)
    return await request_validation_exception_handler(request, exc)


async def _flow_not_found(request: Request, exc: Exception) -> Response:
    return message("Flow not found", 404)


async def _invalid_parameters(request: Request, exc: Exception) -> Response:
    """400 naming each bad parameter: the first ``REPORTED_ERRORS`` of them, names shortened.

    A hostile body (thousands of unknown keys, a key of a megabyte) gets a short answer.
    """
    assert isinstance(exc, ParameterValidationError)
    errors = [
        {**error, "parameter": str(error["parameter"])[:REPORTED_NAME_LENGTH]}
        for error in exc.errors[:REPORTED_ERRORS]
    ]
    text = str(exc) if errors == exc.errors else str(ParameterValidationError(errors))
    if len(exc.errors) > len(errors):
        text += f"; and {len(exc.errors) - len(errors)} more"
    return json_response({"message": text, "errors": errors}, 400)


async def _store_failed(request: Request, exc: Exception) -> Response:
    """503 (retry later) while the database fails; 507 once it has no space left, which no
    retry mends until someone frees space."""
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    if isinstance(exc, StoreFull):
        return message(STORE_FULL, 507)
    if isinstance(exc, StoreTimeout):
        text = str(exc)  # says whether the request's write may still be done
    elif isinstance(exc, StoreUnavailable):
        text = "The database cannot be reached"
    else:
        text = "The database operation failed"
    return message(text, 503, {"Retry-After": str(STORE_RETRY_AFTER_SECONDS)})


async def _client_gone(request: Request, exc: Exception) -> Response:
    """A client that hangs up mid-body is its own business: one line, no traceback."""
    logger.info(
        "%s %s: the client disconnected before its request ended", request.method, request.url.path
    )
    return Response(status_code=400)  # nobody is left to read it


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    text = str(exc.detail)
    path = request.url.path
    if exc.status_code == 404 and path.startswith("/deployment/") and path.endswith("/run"):
        text = "Deployment not found"
    return message(text, exc.status_code, dict(exc.headers or {}))

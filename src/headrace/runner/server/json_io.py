"""JSON in and out of the runner webserver, cheaply and strictly.

Hot routes build ``Response`` objects from pre-encoded bytes instead of going
through FastAPI's response models. Request bodies are read here, once, and held
to the JSON value rules of ``headrace.jsonvalues``: a JSON object of strict JSON,
not nested too deeply, with only text the store can keep.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from starlette.requests import Request
from starlette.responses import Response

from headrace.flow_runs import FlowRun
from headrace.jsonvalues import MAX_NESTING, find_unstorable_in_json, strict_loads, too_deep

JSON_MEDIA_TYPE = "application/json"


class BadRequestBody(ValueError):
    """The request (its body, or a header) is not what the route accepts (answered with 400)."""


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response from plain data; NaN and infinities become null."""
    body = pydantic_core.to_json(content, inf_nan_mode="null")
    return raw_json_response(body, status_code, headers)


def raw_json_response(
    body: bytes | str, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response from an already encoded body."""
    return Response(body, status_code=status_code, headers=headers, media_type=JSON_MEDIA_TYPE)


def message(text: str, status_code: int, headers: dict[str, str] | None = None) -> Response:
    """The ``{"message": ...}`` body every error and acknowledgement uses."""
    return json_response({"message": text}, status_code, headers)


def run_json(run: FlowRun, **extra: Any) -> dict[str, Any]:
    """A flow run as the JSON object the API returns."""
    data = run.model_dump(mode="json")
    data.update(extra)
    return data


async def read_json_object(request: Request, *, empty: dict[str, Any] | None = None) -> Any:
    """The body as a JSON object; an empty body gives ``empty`` (400 when that is None)."""
    raw = await request.body()
    if not raw.strip():
        if empty is None:
            raise BadRequestBody("The request body must be a JSON object")
        return dict(empty)
    try:
        value = strict_loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequestBody(f"The request body is not valid JSON: {_short(exc)}") from None
    if not isinstance(value, dict):
        raise BadRequestBody("The request body must be a JSON object")
    if too_deep(raw, value):
        raise BadRequestBody(f"The request body is nested more than {MAX_NESTING} levels deep")
    if problem := find_unstorable_in_json(raw, value):
        where, what = problem
        raise BadRequestBody(f"{where or 'The request body'}: {what}")
    return value


def _short(exc: BaseException) -> str:
    text = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
    return text[:200]

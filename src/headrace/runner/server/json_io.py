"""JSON in and out of the runner webserver, cheaply and strictly.

Hot routes build ``Response`` objects from pre-encoded bytes instead of going
through FastAPI's response models. Request bodies are parsed here, once, with
the rules the store can keep: a JSON object, finite numbers, no NUL characters
and no unpaired surrogates.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pydantic_core
from starlette.requests import Request
from starlette.responses import Response

from headrace.flow_runs import FlowRun
from headrace.jsonvalues import find_unstorable

JSON_MEDIA_TYPE = "application/json"
MAX_NESTING = 64
"""Deepest nesting of arrays and objects a request body may have."""
_MAY_HOLD_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")
"""Escapes of NUL or of a surrogate: only a body with one is searched for unstorable strings."""


class BadRequestBody(ValueError):
    """The request body is not what the route accepts (answered with 400)."""


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
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:
        raise BadRequestBody(f"The request body is not valid JSON: {_short(exc)}") from None
    if not isinstance(value, dict):
        raise BadRequestBody("The request body must be a JSON object")
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING and _depth(value) > MAX_NESTING:
        raise BadRequestBody(f"The request body is nested more than {MAX_NESTING} levels deep")
    if _MAY_HOLD_UNSTORABLE.search(raw) and (problem := find_unstorable(value)):
        where, what = problem
        raise BadRequestBody(f"{where or 'The request body'}: {what}")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return list(value) if isinstance(value, list) else []


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest (iteratively: the body may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in _children(item))
    return deepest


def _short(exc: BaseException) -> str:
    text = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply"
    return text[:200]

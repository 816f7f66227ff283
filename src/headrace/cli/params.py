"""Parameters given on the command line: ``--param k=v`` (repeatable) and ``--params JSON``.

A ``--param`` value is read as JSON when it parses (``3``, ``true``, ``[1, 2]``,
``{"a": 1}``, ``null``, ``"3"``) and kept as the literal string otherwise
(``hello``, ``2026-01-31``). ``NaN`` and ``Infinity`` stay strings: they are
not JSON. ``--params`` must be a JSON object; ``--param`` values are laid over
it, and a later ``--param`` for the same name wins. A number too large for a
float (``1e999``) is refused naming its parameter, with the message the
webserver gives for it, as are ``NaN`` and ``Infinity`` inside ``--params``.
Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from headrace.cli.errors import UsageProblem
from headrace.jsonvalues import reject_constant


class ParameterSyntaxError(UsageProblem):
    """A ``--param`` or ``--params`` value is malformed (a usage error, not a validation one)."""


def parse_value(text: str) -> Any:
    """``text`` decoded as JSON when it is JSON, else ``text`` itself."""
    try:
        return json.loads(text, parse_constant=reject_constant)
    except ValueError:
        return text


def parse_param(text: str) -> tuple[str, Any]:
    """Split ``name=value`` at the first ``=`` and decode the value."""
    name, equals, value = text.partition("=")
    name = name.strip()
    if not equals or not name:
        raise ParameterSyntaxError(
            f"--param expects NAME=VALUE (for example x=3 or name=world), got {text!r}"
        )
    return name, parse_value(value)


def parse_params_json(text: str) -> dict[str, Any]:
    """The ``--params`` value: a JSON object of parameter names to values."""
    try:  # NaN and Infinity are parsed, to be refused as the webserver refuses them
        value = json.loads(text)
    except ValueError as exc:
        raise ParameterSyntaxError(f"--params is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ParameterSyntaxError(
            f"--params must be a JSON object such as '{{\"x\": 1}}', got {type(value).__name__}"
        )
    return value


def collect_parameters(params_json: str | None, pairs: Iterable[str] | None) -> dict[str, Any]:
    """``--params`` overlaid with every ``--param``, in order.

    Raises ``ParameterValidationError`` naming a parameter that holds NaN or an infinity.
    """
    from headrace.parameters import jsonable_parameters  # pydantic: only once options are read

    parameters = parse_params_json(params_json) if params_json is not None else {}
    for pair in pairs or ():
        name, value = parse_param(pair)
        parameters[name] = value
    return jsonable_parameters(parameters)

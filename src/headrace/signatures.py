"""Which function signatures can be flows: checked at decoration time, without pydantic.

Kept apart from ``parameters`` so that ``@flow`` (and ``import headrace``) does
not pay for pydantic until a schema or a validation is first needed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from headrace.exceptions import FlowDefinitionError

_FORBIDDEN_KINDS: dict[inspect._ParameterKind, str] = {
    inspect.Parameter.VAR_POSITIONAL: "*args cannot be given by name in a flow run's parameters",
    inspect.Parameter.VAR_KEYWORD: "**kwargs cannot be described by a parameter schema",
    inspect.Parameter.POSITIONAL_ONLY: "positional-only parameters cannot be given by name",
}


def check_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """Refuse, at definition time, parameters that a dict of parameters cannot fill."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise FlowDefinitionError(f"Cannot read the signature of {fn!r}: {exc}") from exc
    for parameter in signature.parameters.values():
        reason = _FORBIDDEN_KINDS.get(parameter.kind)
        if reason is not None:
            raise FlowDefinitionError(
                f"Parameter {parameter.name!r} of {fn_name(fn)} is not supported in a flow: "
                f"{reason}."
            )
    return signature


def fn_name(fn: Callable[..., Any]) -> str:
    return str(getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn))))

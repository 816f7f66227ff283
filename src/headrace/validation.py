"""Checking parameters against a stored JSON schema, when the flow object is not at hand.

A deployment's parameter schema lives in the database; a client in another
process (or a runner built from records) validates against it with jsonschema.
"""

from __future__ import annotations

from typing import Any

from headrace.exceptions import ParameterValidationError

_validators: dict[str, Any] = {}
VALIDATOR_CACHE_SIZE = 1024
VALUE_SHOWN_CHARS = 80


def prepare_validator(schema: dict[str, Any]) -> None:
    """Compile (and import jsonschema for) ``schema`` ahead of its first use."""
    _validator(schema)


def _validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per distinct schema: building one costs far more than using it."""
    import json

    import jsonschema

    key = json.dumps(schema, sort_keys=True)
    validator = _validators.get(key)
    if validator is None:
        if len(_validators) >= VALIDATOR_CACHE_SIZE:
            _validators.clear()
        validator = _validators[key] = jsonschema.Draft202012Validator(
            {**schema, "$defs": schema.get("definitions", {})},
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )
    return validator


def validate_with_schema(schema: dict[str, Any], parameters: dict[str, Any]) -> None:
    """Raise ``ParameterValidationError`` naming every parameter that breaks ``schema``."""
    # ``properties`` present but empty is a flow without parameters: nothing may be given.
    properties = schema.get("properties")
    errors = [
        {"parameter": name, "message": "Unknown parameter"}
        for name in parameters
        if properties is not None and name not in properties
    ]
    validator = _validator(schema)
    for error in sorted(validator.iter_errors(parameters), key=lambda e: list(e.path)):
        errors.append({"parameter": _parameter_of(error), "message": _as_json(error)})
    if errors:
        raise ParameterValidationError(errors)


def _as_json(error: Any) -> str:
    """jsonschema's message with the value as the user wrote it (``true``, not ``True``), short."""
    import json

    message: str = error.message
    shown = repr(error.instance)
    if not message.startswith(shown):
        return message
    try:
        written = json.dumps(error.instance, ensure_ascii=False)
    except (TypeError, ValueError):
        return message
    if len(written) > VALUE_SHOWN_CHARS:
        written = written[:VALUE_SHOWN_CHARS] + "..."
    return written + message[len(shown) :]


def _parameter_of(error: Any) -> str:
    if error.path:
        return ".".join(str(part) for part in error.path)
    if error.validator == "required":
        # "'x' is a required property": name the missing parameter itself.
        return str(error.message.split("'")[1]) if "'" in error.message else "parameters"
    return "parameters"

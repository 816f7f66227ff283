"""A flow's parameters: their JSON schema and their validation.

A function's signature becomes a pydantic model (built once, at first use) so
that the schema the webserver publishes and the coercion applied before a call
come from the same source. Fields are named ``p0``, ``p1``... and carry the
parameter's name as their alias, so parameters called ``json``, ``copy`` or
``model_x`` cannot collide with pydantic's own attributes.

When the flow object is not at hand (a client in another process, a runner
built from records), parameters are checked against the deployment's stored
JSON schema instead, with jsonschema (``validate_with_schema``).

Values given from Python (a pydantic model, a date, an enum, a UUID) become
JSON values as pydantic's JSON mode makes them (``jsonable_parameters``), so
every entry point sends and stores what an HTTP body could have held.
"""

from __future__ import annotations

import inspect
import json
import math
import threading
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from headrace.exceptions import FlowDefinitionError, ParameterValidationError
from headrace.signatures import check_signature, fn_name

REF_TEMPLATE = "#/definitions/{model}"
NON_FINITE = "JSON numbers must be finite: NaN, Infinity and numbers beyond 1.8e308 are refused"
NOT_AN_OBJECT = "Parameters must be a JSON object"


class ParameterSchema(pydantic.BaseModel):
    """The JSON schema of a flow's parameters; ``.model_dump()`` is the schema itself."""

    title: Literal["Parameters"] = "Parameters"
    type: Literal["object"] = "object"
    properties: dict[str, Any] = pydantic.Field(default_factory=dict)
    required: list[str] = pydantic.Field(default_factory=list)
    definitions: dict[str, Any] = pydantic.Field(default_factory=dict)


class _LenientJsonSchema(GenerateJsonSchema):
    """Leave out what JSON cannot describe instead of failing the whole schema.

    A parameter typed with an arbitrary class, or a default that cannot be
    encoded, should not stop a flow from being served.
    """

    def handle_invalid_for_json_schema(
        self, schema: core_schema.CoreSchema, error_info: str
    ) -> JsonSchemaValue:
        return {}

    def emit_warning(self, kind: Any, detail: str) -> None:
        if kind != "non-serializable-default":
            super().emit_warning(kind, detail)


class ParameterModel:
    """The compiled parameters of one function: a pydantic model and its schema."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        signature = check_signature(fn)
        hints = _resolve_hints(fn)
        self.names: list[str] = list(signature.parameters)
        self._fields = {name: f"p{i}" for i, name in enumerate(self.names)}
        definitions: dict[str, Any] = {
            self._fields[name]: _field_definition(name, param, hints)
            for name, param in signature.parameters.items()
        }
        # Not extra="forbid": that config would leak into nested stdlib dataclasses.
        # Unknown names are reported by _validate instead.
        config = pydantic.ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())
        self.model: type[pydantic.BaseModel] = pydantic.create_model(
            "Parameters", __config__=config, **definitions
        )
        self._schema: ParameterSchema | None = None

    @property
    def schema(self) -> ParameterSchema:
        """The JSON schema, generated on first access."""
        if self._schema is None:
            self._schema = self._build_schema()
        return self._schema

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce the given parameters to python values; defaults are not filled in."""
        instance = self._validate(params)
        assert instance is not None
        return {
            name: getattr(instance, field)
            for name, field in self._fields.items()
            if field in instance.model_fields_set
        }

    def validate_json(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check the given parameters and return them JSON-encoded, as they would be stored."""
        instance = self._validate(params)
        assert instance is not None
        # include, not exclude_unset: nested models keep their defaults.
        return instance.model_dump(mode="json", by_alias=True, include=instance.model_fields_set)

    def check_partial(self, params: Mapping[str, Any]) -> None:
        """Check the values given without requiring the rest (a deployment's defaults)."""
        self._validate(params, partial=True)

    def _validate(
        self, params: Mapping[str, Any], *, partial: bool = False
    ) -> pydantic.BaseModel | None:
        if not isinstance(params, Mapping):
            raise ParameterValidationError([{"parameter": "", "message": NOT_AN_OBJECT}])
        errors = [
            {"parameter": str(name), "message": "Unknown parameter"}
            for name in params
            if name not in self._fields
        ]
        known = {name: value for name, value in params.items() if name in self._fields}
        instance = None
        try:
            instance = self.model.model_validate(known)
        except pydantic.ValidationError as exc:
            errors = _errors(exc, skip_missing=partial) + errors
        if errors:
            raise ParameterValidationError(errors)
        return instance

    def _build_schema(self) -> ParameterSchema:
        raw = self.model.model_json_schema(
            by_alias=True, ref_template=REF_TEMPLATE, schema_generator=_LenientJsonSchema
        )
        properties: dict[str, Any] = raw.get("properties", {})
        for position, name in enumerate(self.names):
            properties[name]["position"] = position
        return ParameterSchema(
            properties=properties,
            required=list(raw.get("required", [])),
            definitions=raw.get("$defs", {}),
        )


def _resolve_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Evaluate string annotations (``from __future__ import annotations``) in fn's globals."""
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise FlowDefinitionError(
            f"Cannot resolve the type hints of {fn_name(fn)}: {exc}. "
            "Types used in a flow's signature must be importable from its module."
        ) from exc
    except TypeError:
        # Callables that are not plain functions (partials, instances) keep their
        # annotations as the signature reports them.
        return {}


def _field_definition(
    name: str, param: inspect.Parameter, hints: Mapping[str, Any]
) -> tuple[Any, Any]:
    annotation = hints.get(name, param.annotation)
    if annotation is inspect.Parameter.empty:
        annotation = Any
    default = ... if param.default is inspect.Parameter.empty else param.default
    return Annotated[annotation, pydantic.Field(alias=name, title=name)], default


def _errors(exc: pydantic.ValidationError, *, skip_missing: bool) -> list[dict[str, Any]]:
    """One entry per bad value, named by the parameter and the path inside it."""
    return [
        {"parameter": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
        for error in exc.errors(include_url=False)
        if not (skip_missing and error["type"] == "missing" and len(error["loc"]) == 1)
    ]


_cache: weakref.WeakKeyDictionary[Callable[..., Any], ParameterModel] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def compile_parameters(fn: Callable[..., Any]) -> ParameterModel:
    """The function's ParameterModel, built once and kept while the function lives."""
    with _cache_lock:
        try:
            compiled = _cache.get(fn)
        except TypeError:  # not weak-referenceable or not hashable: do not cache
            return ParameterModel(fn)
        if compiled is None:
            compiled = ParameterModel(fn)
            _cache[fn] = compiled
        return compiled


_validators: dict[str, Any] = {}
VALIDATOR_CACHE_SIZE = 1024
VALUE_SHOWN_CHARS = 80


def prepare_validator(schema: dict[str, Any]) -> None:
    """Compile (and import jsonschema for) ``schema`` ahead of its first use."""
    _validator(schema)


def _validator(schema: dict[str, Any]) -> Any:
    """A compiled validator per distinct schema: building one costs far more than using it."""
    # Imported on first use: jsonschema is slow to import, and ``import headrace``,
    # the CLI and every run's child process would otherwise pay for it.
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


def jsonable_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    """``parameters`` as JSON values, as pydantic's JSON mode encodes them.

    Models, dates, enums, UUIDs and the like become what a flow's parameter
    validation accepts back. Raises ``ParameterValidationError`` naming each
    parameter that holds NaN or an infinity (no store keeps them, and HTTP
    refuses them) or a value with no JSON form.
    """
    if parameters is None:
        return {}
    if not isinstance(parameters, Mapping):
        raise ParameterValidationError([{"parameter": "", "message": NOT_AN_OBJECT}])
    converted: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []
    for name, value in parameters.items():
        try:
            converted[str(name)] = pydantic_core.to_jsonable_python(value, inf_nan_mode="constants")
        except pydantic_core.PydanticSerializationError as exc:
            errors.append({"parameter": str(name), "message": f"Not encodable as JSON: {exc}"})
    errors.extend(non_finite_errors(converted))
    if errors:
        raise ParameterValidationError(errors)
    return converted


def non_finite_errors(parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One error per parameter holding NaN or an infinity, at its path (``a.b``, ``xs[1]``)."""
    errors: list[dict[str, Any]] = []
    stack: list[tuple[Any, str]] = [(value, str(name)) for name, value in parameters.items()]
    stack.reverse()
    while stack:  # iteratively: the value may be hostile
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            errors.append({"parameter": path, "message": NON_FINITE})
        elif isinstance(item, dict):
            children = [(child, f"{path}.{key}") for key, child in item.items()]
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend(reversed([(child, f"{path}[{i}]") for i, child in enumerate(item)]))
    return errors

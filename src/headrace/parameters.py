"""A flow's parameters: their JSON schema and their validation.

A function's signature becomes a pydantic model (built once, at first use) so
that the schema the webserver publishes and the coercion applied before a call
come from the same source. Fields are named ``p0``, ``p1``... and carry the
parameter's name as their alias, so parameters called ``json``, ``copy`` or
``model_x`` cannot collide with pydantic's own attributes.
"""

from __future__ import annotations

import inspect
import threading
import typing
import weakref
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from headrace.exceptions import FlowDefinitionError, ParameterValidationError
from headrace.signatures import check_signature, fn_name

REF_TEMPLATE = "#/definitions/{model}"


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
            raise ParameterValidationError(
                [{"parameter": "", "message": "Parameters must be a JSON object"}]
            )
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


def _compiled(fn_or_compiled: Callable[..., Any] | ParameterModel) -> ParameterModel:
    if isinstance(fn_or_compiled, ParameterModel):
        return fn_or_compiled
    return compile_parameters(fn_or_compiled)


def parameter_schema(fn: Callable[..., Any]) -> ParameterSchema:
    """The JSON schema a webserver publishes for fn's parameters."""
    return compile_parameters(fn).schema


def validate_parameters(
    fn_or_compiled: Callable[..., Any] | ParameterModel, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Coerce parameters for a call; raises ParameterValidationError naming each bad one."""
    return _compiled(fn_or_compiled).validate(params)


def validate_json_parameters(
    fn_or_compiled: Callable[..., Any] | ParameterModel, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Check parameters without calling; returns them JSON-encoded for storage."""
    return _compiled(fn_or_compiled).validate_json(params)

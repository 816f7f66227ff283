from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import pathlib
import uuid
from typing import Annotated, Any, Literal

import pydantic
import pytest

from headrace.exceptions import FlowDefinitionError, ParameterValidationError
from headrace.parameters import (
    NON_FINITE,
    ParameterSchema,
    compile_parameters,
    jsonable_parameters,
)
from headrace.signatures import check_signature


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Window(pydantic.BaseModel):
    start: datetime.date
    days: int = 1


@dataclasses.dataclass
class Target:
    table: str
    limit: int = 10


DEFAULT_RUN_ID = uuid.UUID(int=1)
DEFAULT_WINDOW = Window(start=datetime.date(2026, 2, 1))


class Unencodable:
    """A default JSON cannot describe."""


def report(
    day: datetime.date,
    window: Window,
    target: Target,
    color: Color = Color.RED,
    *,
    mode: Literal["fast", "slow"] = "fast",
    note: str | None = None,
) -> None:
    pass


def schema_of(fn: Any) -> dict[str, Any]:
    return compile_parameters(fn).schema.model_dump()


def test_schema_golden_with_definitions_and_refs() -> None:
    assert schema_of(report) == {
        "title": "Parameters",
        "type": "object",
        "properties": {
            "day": {"title": "day", "type": "string", "format": "date", "position": 0},
            "window": {"$ref": "#/definitions/Window", "title": "window", "position": 1},
            "target": {"$ref": "#/definitions/Target", "title": "target", "position": 2},
            "color": {
                "$ref": "#/definitions/Color",
                "title": "color",
                "default": "red",
                "position": 3,
            },
            "mode": {
                "title": "mode",
                "enum": ["fast", "slow"],
                "type": "string",
                "default": "fast",
                "position": 4,
            },
            "note": {
                "title": "note",
                "anyOf": [{"type": "string"}, {"type": "null"}],
                "default": None,
                "position": 5,
            },
        },
        "required": ["day", "window", "target"],
        "definitions": {
            "Color": {"title": "Color", "enum": ["red", "blue"], "type": "string"},
            "Window": {
                "title": "Window",
                "type": "object",
                "properties": {
                    "start": {"title": "Start", "type": "string", "format": "date"},
                    "days": {"title": "Days", "type": "integer", "default": 1},
                },
                "required": ["start"],
            },
            "Target": {
                "title": "Target",
                "type": "object",
                "properties": {
                    "table": {"title": "Table", "type": "string"},
                    "limit": {"title": "Limit", "type": "integer", "default": 10},
                },
                "required": ["table"],
            },
        },
    }


def test_schema_is_a_parameter_schema_and_empty_for_no_parameters() -> None:
    def nothing() -> None:
        pass

    schema = compile_parameters(nothing).schema
    assert isinstance(schema, ParameterSchema)
    assert schema.model_dump() == {
        "title": "Parameters",
        "type": "object",
        "properties": {},
        "required": [],
        "definitions": {},
    }


def test_defaults_are_json_encoded() -> None:
    def fn(
        day: datetime.date = datetime.date(2026, 1, 31),
        at: datetime.datetime = datetime.datetime(2026, 1, 31, 12, 30, tzinfo=datetime.UTC),
        run_id: uuid.UUID = DEFAULT_RUN_ID,
        path: pathlib.Path = pathlib.Path("/data/in"),
        amount: decimal.Decimal = decimal.Decimal("1.50"),
        pair: tuple[int, str] = (1, "a"),
        window: Window = DEFAULT_WINDOW,
    ) -> None:
        pass

    props = schema_of(fn)["properties"]
    assert props["day"]["default"] == "2026-01-31"
    assert props["at"]["default"] == "2026-01-31T12:30:00Z"
    assert props["run_id"]["default"] == "00000000-0000-0000-0000-000000000001"
    assert props["path"]["default"] == "/data/in"
    assert props["amount"]["default"] == "1.50"
    assert props["pair"]["default"] == [1, "a"]
    assert props["pair"]["prefixItems"] == [{"type": "integer"}, {"type": "string"}]
    assert props["window"]["default"] == {"start": "2026-02-01", "days": 1}
    assert schema_of(fn)["required"] == []


def test_unannotated_parameters_are_any() -> None:
    def fn(a, b=3):  # type: ignore[no-untyped-def]
        pass

    assert schema_of(fn)["properties"] == {
        "a": {"title": "a", "position": 0},
        "b": {"title": "b", "default": 3, "position": 1},
    }


def test_keyword_only_parameters_keep_their_position() -> None:
    def fn(a: int, *, b: int, c: list[int] | None = None) -> None:
        pass

    schema = schema_of(fn)
    assert [schema["properties"][n]["position"] for n in ("a", "b", "c")] == [0, 1, 2]
    assert schema["required"] == ["a", "b"]
    assert schema["properties"]["c"]["anyOf"][0] == {"type": "array", "items": {"type": "integer"}}


def test_annotated_field_description_and_constraints() -> None:
    def fn(n: Annotated[int, pydantic.Field(description="How many", ge=1)] = 2) -> None:
        pass

    assert schema_of(fn)["properties"]["n"] == {
        "title": "n",
        "description": "How many",
        "minimum": 1,
        "type": "integer",
        "default": 2,
        "position": 0,
    }
    with pytest.raises(ParameterValidationError) as info:
        compile_parameters(fn).validate({"n": 0})
    assert info.value.parameter_names == ["n"]


def test_names_that_shadow_pydantic_attributes_work() -> None:
    def fn(json: int, copy: str = "x", model_config: int = 0, schema: bool = False) -> None:
        pass

    assert list(schema_of(fn)["properties"]) == ["json", "copy", "model_config", "schema"]
    assert compile_parameters(fn).validate({"json": "1", "model_config": "2"}) == {
        "json": 1,
        "model_config": 2,
    }


def test_unencodable_default_and_arbitrary_type_are_left_out_of_the_schema() -> None:
    def fn(thing: Unencodable = Unencodable()) -> None:  # noqa: B008
        pass

    assert schema_of(fn)["properties"]["thing"] == {"title": "thing", "position": 0}


def test_coercion_of_rich_types() -> None:
    def fn(
        day: datetime.date,
        run_id: uuid.UUID,
        amount: decimal.Decimal,
        path: pathlib.Path,
        window: Window,
        target: Target,
        color: Color,
        pair: tuple[int, str],
        counts: dict[str, int],
    ) -> None:
        pass

    values = compile_parameters(fn).validate(
        {
            "day": "2026-01-31",
            "run_id": "00000000-0000-0000-0000-000000000002",
            "amount": "2.25",
            "path": "/tmp/x",
            "window": {"start": "2026-02-01", "days": "3"},
            "target": {"table": "t"},
            "color": "blue",
            "pair": ["4", "b"],
            "counts": {"a": "1"},
        },
    )
    assert values == {
        "day": datetime.date(2026, 1, 31),
        "run_id": uuid.UUID(int=2),
        "amount": decimal.Decimal("2.25"),
        "path": pathlib.Path("/tmp/x"),
        "window": Window(start=datetime.date(2026, 2, 1), days=3),
        "target": Target(table="t", limit=10),
        "color": Color.BLUE,
        "pair": (4, "b"),
        "counts": {"a": 1},
    }


def test_defaults_are_not_filled_in() -> None:
    def fn(a: int, b: list[int] | None = None) -> None:
        pass

    assert compile_parameters(fn).validate({"a": 1}) == {"a": 1}


def test_json_validation_returns_json_values() -> None:
    assert compile_parameters(report).validate_json(
        {
            "day": datetime.date(2026, 1, 31),
            "window": {"start": "2026-02-01"},
            "target": Target(table="t"),
            "mode": "slow",
        },
    ) == {
        "day": "2026-01-31",
        "window": {"start": "2026-02-01", "days": 1},
        "target": {"table": "t", "limit": 10},
        "mode": "slow",
    }


def test_errors_name_every_bad_parameter_with_nested_paths() -> None:
    with pytest.raises(ParameterValidationError) as info:
        compile_parameters(report).validate(
            {
                "day": "not a date",
                "window": {"start": "2026-02-01", "days": "many"},
                "mode": "medium",
                "colour": "red",
            },
        )
    errors = info.value.errors
    assert [e["parameter"] for e in errors] == ["day", "window.days", "target", "mode", "colour"]
    by_name = {e["parameter"]: e["message"] for e in errors}
    assert by_name["target"] == "Field required"
    assert by_name["colour"] == "Unknown parameter"
    assert "valid date" in by_name["day"]
    assert "valid integer" in by_name["window.days"]
    assert "'fast' or 'slow'" in by_name["mode"]
    assert "colour: Unknown parameter" in str(info.value)


def test_json_validation_raises_the_same_errors() -> None:
    with pytest.raises(ParameterValidationError) as info:
        compile_parameters(report).validate_json({"extra": 1})
    assert info.value.parameter_names == ["day", "window", "target", "extra"]


def test_non_mapping_parameters_are_an_error() -> None:
    with pytest.raises(ParameterValidationError):
        compile_parameters(report).validate([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("source", "name", "reason"),
    [
        ("def fn(a, *args): pass", "args", "*args"),
        ("def fn(a, **kwargs): pass", "kwargs", "**kwargs"),
        ("def fn(a, /, b): pass", "a", "positional-only"),
    ],
)
def test_unsupported_parameter_kinds(source: str, name: str, reason: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(FlowDefinitionError) as info:
        check_signature(namespace["fn"])
    assert repr(name) in str(info.value)
    assert reason in str(info.value)
    with pytest.raises(FlowDefinitionError):
        compile_parameters(namespace["fn"])


def test_unresolvable_annotation_is_a_definition_error() -> None:
    def fn(a: DoesNotExist) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    with pytest.raises(FlowDefinitionError, match="DoesNotExist"):
        compile_parameters(fn)


def test_compiled_model_is_built_once_per_function() -> None:
    def fn(a: int) -> None:
        pass

    compiled = compile_parameters(fn)
    assert compile_parameters(fn) is compiled
    assert compiled.schema is compiled.schema
    assert compiled.validate({"a": "3"}) == {"a": 3}


def test_python_values_become_the_json_pydantic_gives_them() -> None:
    class Colour(enum.Enum):
        RED = "red"

    class Window(pydantic.BaseModel):
        start: datetime.date

    ident = uuid.UUID(int=7)
    window = Window(start=datetime.date(2026, 1, 31))
    given = {"w": window, "c": Colour.RED, "u": ident, "t": (1, 2)}
    assert jsonable_parameters(given) == {
        "w": {"start": "2026-01-31"},
        "c": "red",
        "u": str(ident),
        "t": [1, 2],
    }
    assert jsonable_parameters(None) == {}


def test_values_without_a_json_form_are_refused_naming_each_parameter() -> None:
    with pytest.raises(ParameterValidationError) as info:
        jsonable_parameters({"ok": 1, "o": object(), "x": [1.0, float("nan")], "y": float("-inf")})
    assert info.value.errors[0]["parameter"] == "o"
    assert "Not encodable as JSON" in info.value.errors[0]["message"]
    assert info.value.errors[1:] == [
        {"parameter": "x[1]", "message": NON_FINITE},
        {"parameter": "y", "message": NON_FINITE},
    ]

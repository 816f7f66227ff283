"""``--param k=v`` and ``--params JSON``: JSON when it parses, the literal string otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from headrace.cli.params import (
    ParameterSyntaxError,
    collect_parameters,
    parse_param,
    parse_params_json,
    parse_value,
)
from headrace.exceptions import ParameterValidationError
from headrace.parameters import NON_FINITE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3", 3),
        ("-2.5", -2.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 2]", [1, 2]),
        ('{"a": {"b": [1]}}', {"a": {"b": [1]}}),
        ('"3"', "3"),
        ("hello", "hello"),
        ("2026-01-31", "2026-01-31"),
        ("", ""),
        (" spaced words ", " spaced words "),
        ("True", "True"),
        ("NaN", "NaN"),
        ("Infinity", "Infinity"),
        ("[1, 2", "[1, 2"),
    ],
)
def test_values_are_json_when_they_parse(text: str, expected: Any) -> None:
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_a_param_splits_at_the_first_equals_sign() -> None:
    assert parse_param("x=3") == ("x", 3)
    assert parse_param("query=a=b") == ("query", "a=b")
    assert parse_param("name=") == ("name", "")
    assert parse_param(" padded =1") == ("padded", 1)


@pytest.mark.parametrize("text", ["x", "=3", "  =3", ""])
def test_a_param_needs_a_name_and_an_equals_sign(text: str) -> None:
    with pytest.raises(ParameterSyntaxError, match="NAME=VALUE"):
        parse_param(text)


def test_params_json_must_be_an_object() -> None:
    assert parse_params_json('{"x": 1, "tags": ["a"]}') == {"x": 1, "tags": ["a"]}
    with pytest.raises(ParameterSyntaxError, match="JSON object"):
        parse_params_json("[1, 2]")
    with pytest.raises(ParameterSyntaxError, match="not valid JSON"):
        parse_params_json("{x: 1}")


@pytest.mark.parametrize(
    ("params", "pairs", "where"),
    [
        (None, ["delay=1e999"], "delay"),
        (None, ["delay=-1e999"], "delay"),
        ('{"delay": NaN}', [], "delay"),
        ('{"a": {"b": [1, Infinity]}}', [], "a.b[1]"),
    ],
)
def test_non_finite_numbers_are_refused_as_the_webserver_refuses_them(
    params: str | None, pairs: list[str], where: str
) -> None:
    with pytest.raises(ParameterValidationError) as info:
        collect_parameters(params, pairs)
    assert info.value.errors == [{"parameter": where, "message": NON_FINITE}]


def test_params_are_overlaid_by_each_param_in_order() -> None:
    merged = collect_parameters('{"x": 1, "y": 2}', ["y=20", "z=hello", "y=200"])
    assert merged == {"x": 1, "y": 200, "z": "hello"}


def test_nothing_given_is_no_parameters() -> None:
    assert collect_parameters(None, None) == {}
    assert collect_parameters(None, []) == {}

"""Checking parameters against a stored schema: what the flow itself would refuse is refused."""

from __future__ import annotations

import pytest

from headrace.exceptions import ParameterValidationError
from headrace.parameters import validate_with_schema
from tests.flows import basic


def test_a_flow_without_parameters_refuses_any_parameter() -> None:
    schema = basic.returns_object.parameters.model_dump()
    validate_with_schema(schema, {})
    with pytest.raises(ParameterValidationError) as raised:
        validate_with_schema(schema, {"bogus": 1})
    assert raised.value.parameter_names == ["bogus"]


def test_unknown_and_bad_parameters_are_each_named() -> None:
    schema = basic.add.parameters.model_dump()
    with pytest.raises(ParameterValidationError) as raised:
        validate_with_schema(schema, {"x": "one", "z": 1})
    assert sorted(raised.value.parameter_names) == ["x", "z"]


def test_a_schema_without_properties_checks_only_what_it_says() -> None:
    validate_with_schema({"type": "object"}, {"anything": 1})


def test_messages_show_values_as_json_and_briefly() -> None:
    schema = basic.add.parameters.model_dump()
    with pytest.raises(ParameterValidationError) as raised:
        validate_with_schema(schema, {"x": True, "y": None, "z": 1})
    messages = {e["parameter"]: e["message"] for e in raised.value.errors}
    assert messages["x"].startswith("true is not")
    assert messages["y"].startswith("null is not")
    assert messages["z"] == "Unknown parameter"
    with pytest.raises(ParameterValidationError) as raised:
        validate_with_schema(schema, {"x": list(range(10_000))})
    (error,) = raised.value.errors
    assert error["message"].startswith("[0, 1, 2") and len(error["message"]) < 200

"""Deployment parameter schemas moved into an OpenAPI document's components."""

from __future__ import annotations

import uuid
from typing import Any

from headrace.deployments import Deployment
from headrace.runner.server.openapi import (
    NO_NUL,
    deployment_body,
    headers_without_null,
    inject_request_bodies,
    move_definitions,
)
from headrace.states import utcnow


def _schema(point_fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "Parameters",
        "type": "object",
        "properties": {"shape": {"$ref": "#/definitions/Shape", "title": "shape", "position": 0}},
        "required": ["shape"],
        "definitions": {
            "Shape": {
                "type": "object",
                "properties": {
                    "points": {"type": "array", "items": {"$ref": "#/definitions/Point"}}
                },
            },
            "Point": {"type": "object", "properties": point_fields},
        },
    }


def test_definitions_move_to_components_and_refs_follow() -> None:
    components: dict[str, Any] = {}
    body = move_definitions(_schema({"x": {"type": "integer"}}), components)
    assert "definitions" not in body
    assert body["properties"]["shape"]["$ref"] == "#/components/schemas/Shape"
    assert components["Shape"]["properties"]["points"]["items"]["$ref"] == (
        "#/components/schemas/Point"
    )
    assert components["Point"]["properties"] == {"x": {"type": "integer"}}


def test_same_model_is_shared_and_different_models_are_renamed() -> None:
    components: dict[str, Any] = {}
    move_definitions(_schema({"x": {"type": "integer"}}), components, salt="a")
    move_definitions(_schema({"x": {"type": "integer"}}), components, salt="b")
    assert sorted(components) == ["JSONValue", "Point", "Shape"]
    other = move_definitions(_schema({"x": {"type": "string"}}), components, salt="c")
    renamed = [name for name in components if name.startswith("Point_")]
    assert len(renamed) == 1
    assert components[renamed[0]]["properties"]["x"]["type"] == "string"
    shape_ref = other["properties"]["shape"]["$ref"].removeprefix("#/components/schemas/")
    assert components[shape_ref]["properties"]["points"]["items"]["$ref"] == (
        f"#/components/schemas/{renamed[0]}"
    )
    assert components["Point"]["properties"]["x"]["type"] == "integer", "the first one is kept"


def test_request_bodies_land_on_their_operations_only() -> None:
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "paths": {"/deployment/a/run": {"post": {"responses": {}}}, "/health": {"get": {}}},
    }
    inject_request_bodies(
        document, {"/deployment/a/run": _schema({}), "/deployment/gone/run": _schema({})}
    )
    body = document["paths"]["/deployment/a/run"]["post"]["requestBody"]
    assert body["required"] is True, "shape has no default: an empty body is refused"
    assert body["content"]["application/json"]["schema"]["required"] == ["shape"]
    assert "/deployment/gone/run" not in document["paths"]
    assert set(document["components"]["schemas"]) == {"Shape", "Point", "JSONValue"}


def _deployment(**fields: Any) -> Deployment:
    now = utcnow()
    values = {"name": "d", "flow_name": "f", "parameter_schema": _schema({}), **fields}
    return Deployment(id=uuid.uuid4(), created=now, updated=now, **values)


def test_an_enforced_body_refuses_unknown_parameters_and_requires_what_has_no_default() -> None:
    body = deployment_body(_deployment())
    assert body["additionalProperties"] is False
    assert body["required"] == ["shape"]
    with_default = deployment_body(_deployment(parameters={"shape": {"points": []}}))
    assert "required" not in with_default, "a default stands in for an empty body"


def test_an_unenforced_body_takes_any_object() -> None:
    body = deployment_body(_deployment(enforce_parameter_schema=False))
    assert "required" not in body
    assert body.get("additionalProperties") is not False


def test_no_text_in_a_documented_body_may_hold_nul() -> None:
    components: dict[str, Any] = {}
    schema = _schema({"label": {"type": "string"}, "anything": {"title": "anything"}})
    move_definitions(schema, components)
    point = components["Point"]
    assert point["properties"]["label"]["pattern"] == NO_NUL
    assert point["properties"]["anything"]["$ref"] == "#/components/schemas/JSONValue"
    assert point["propertyNames"] == {"pattern": NO_NUL}
    assert point["additionalProperties"] == {"$ref": "#/components/schemas/JSONValue"}
    assert "JSONValue" in components


def test_header_parameters_are_never_null() -> None:
    nullable = {"anyOf": [{"type": "string", "pattern": "^a$"}, {"type": "null"}], "title": "K"}
    document = {
        "paths": {
            "/x": {"post": {"parameters": [{"in": "header", "name": "K", "schema": nullable}]}}
        }
    }
    header = headers_without_null(document)["paths"]["/x"]["post"]["parameters"][0]
    assert header["schema"] == {"type": "string", "pattern": "^a$", "title": "K"}

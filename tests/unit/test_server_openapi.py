"""Deployment parameter schemas moved into an OpenAPI document's components."""

from __future__ import annotations

from typing import Any

from headrace.runner.server.openapi import inject_request_bodies, move_definitions


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
    assert components["Point"] == {"type": "object", "properties": {"x": {"type": "integer"}}}


def test_same_model_is_shared_and_different_models_are_renamed() -> None:
    components: dict[str, Any] = {}
    move_definitions(_schema({"x": {"type": "integer"}}), components, salt="a")
    move_definitions(_schema({"x": {"type": "integer"}}), components, salt="b")
    assert sorted(components) == ["Point", "Shape"]
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
    assert body["required"] is False
    assert body["content"]["application/json"]["schema"]["required"] == ["shape"]
    assert "/deployment/gone/run" not in document["paths"]
    assert set(document["components"]["schemas"]) == {"Shape", "Point"}

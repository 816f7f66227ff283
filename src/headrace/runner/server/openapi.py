"""The OpenAPI document: each deployment's run route documents that deployment's parameters.

A deployment's parameter schema keeps nested models under ``definitions`` with
``#/definitions/X`` references. In the document those models move to
``components.schemas`` and every reference is rewritten to match, so the
request body of ``POST /deployment/{id}/run`` is the schema and resolves. Two
deployments may each define a model of the same name with different fields;
the second is renamed rather than silently merged.

The document declares the API key as an HTTP bearer scheme, so ``/docs`` has an
Authorize button; with a key set every operation but ``/health`` requires it.
``/docs`` serves Swagger UI from an installed package (fastapi-offline), never
from a CDN, so it works on a machine without internet access.

The body documented is the one the server accepts: parameters the deployment
gives defaults for are not required (an empty body means "the defaults"), an
enforced schema refuses unknown parameters (``additionalProperties: false``),
and no text may hold a NUL character (no store keeps one). A header is never
JSON ``null``: an absent header is how a client leaves it out.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from headrace.runner.server.middleware import OPEN_PATHS

if TYPE_CHECKING:
    from headrace.deployments import Deployment

REF_PREFIXES = ("#/definitions/", "#/$defs/")
COMPONENTS_PREFIX = "#/components/schemas/"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
BEARER = "HTTPBearer"
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "The runner's `HEADRACE_API_KEY`, sent as `Authorization: Bearer <key>`.",
}
DOCS_PATH = "/docs"
DOCS_ASSETS_PATH = "/docs/assets"
SWAGGER_UI_PARAMETERS = {"validatorUrl": None, "persistAuthorization": True}
"""No online validator badge (it would call out); the key survives a reload."""

NO_NUL = "^[^\\u0000]*$"
"""An ECMA-262 pattern: text without NUL characters."""
JSON_VALUE = "JSONValue"
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "description": "Any JSON value whose text and keys hold no NUL character",
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": {"$ref": COMPONENTS_PREFIX + JSON_VALUE}},
        {
            "type": "object",
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": {"$ref": COMPONENTS_PREFIX + JSON_VALUE},
        },
    ],
}
_ANY_KEYWORDS = frozenset({"type", "$ref", "anyOf", "allOf", "oneOf", "enum", "const", "not"})


class RunnerApp(FastAPI):
    """A FastAPI app whose OpenAPI document carries the deployments' parameter schemas."""

    request_bodies: dict[str, dict[str, Any]]
    """Path of a POST route -> the JSON schema of its body, ``definitions`` included."""
    key_required: bool = False
    """Whether every operation but ``OPEN_PATHS`` needs the bearer key (one is set)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = get_openapi(
                title=self.title,
                version=self.version,
                openapi_version=self.openapi_version,
                description=self.description,
                routes=self.routes,
            )
            document = inject_request_bodies(document, getattr(self, "request_bodies", {}))
            document = headers_without_null(document)
            self.openapi_schema = declare_bearer(document, required=self.key_required)
        return self.openapi_schema


def declare_bearer(document: dict[str, Any], *, required: bool) -> dict[str, Any]:
    """Declare the API key's bearer scheme; when ``required``, on every operation but
    ``OPEN_PATHS``, which say they need none."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER] = dict(BEARER_SCHEME)
    if required:
        document["security"] = [{BEARER: []}]
        for path in OPEN_PATHS:
            for operation in document.get("paths", {}).get(path, {}).values():
                operation["security"] = []
    return document


def add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI over ``/openapi.json``, its script and style served by this app."""
    assets = resources.files("fastapi_offline") / "static"
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=str(assets)), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_PATH}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    app.add_api_route(DOCS_PATH, swagger_ui, methods=["GET"], include_in_schema=False)


def deployment_body(deployment: Deployment) -> dict[str, Any]:
    """The JSON schema of the body ``POST /deployment/<id>/run`` accepts."""
    body = copy.deepcopy(dict(deployment.parameter_schema or {"type": "object"}))
    body.setdefault("type", "object")
    if not deployment.enforce_parameter_schema:
        body.pop("required", None)
        return body
    required = [name for name in body.get("required", []) if name not in deployment.parameters]
    if required:
        body["required"] = required
    else:
        body.pop("required", None)
    body["additionalProperties"] = False
    return body


def inject_request_bodies(
    document: dict[str, Any], bodies: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """Put each schema in ``bodies`` on its path's POST operation, its models in components."""
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    for path, schema in bodies.items():
        operation = document.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        body = move_definitions(schema, components, salt=path)
        operation["requestBody"] = {
            "required": bool(body.get("required")),
            "content": {"application/json": {"schema": body}},
        }
    return document


def move_definitions(
    schema: Mapping[str, Any], components: dict[str, Any], *, salt: str = ""
) -> dict[str, Any]:
    """``schema`` without its definitions, which go to ``components`` (renamed on conflict)."""
    body = copy.deepcopy(dict(schema))
    definitions: dict[str, Any] = body.pop("definitions", None) or {}
    definitions.update(body.pop("$defs", None) or {})
    for schema_part in (body, *definitions.values()):
        without_nul(schema_part)
    if COMPONENTS_PREFIX + JSON_VALUE in json.dumps([body, definitions]):
        components.setdefault(JSON_VALUE, JSON_VALUE_SCHEMA)
    plain = {name: _UNSAFE_NAME.sub("_", name) or "Model" for name in definitions}
    names = {
        name: _component_name(plain[name], rewrite_refs(definition, plain), components, salt)
        for name, definition in definitions.items()
    }
    for name, definition in definitions.items():
        components[names[name]] = rewrite_refs(definition, names)
    rewritten: dict[str, Any] = rewrite_refs(body, names)
    return rewritten


def _component_name(name: str, definition: Any, components: Mapping[str, Any], salt: str) -> str:
    """``name``, unless components already hold a different schema under it."""
    if name not in components or components[name] == definition:
        return name
    digest = hashlib.sha256((salt + json.dumps(definition, sort_keys=True)).encode()).hexdigest()
    return f"{name}_{digest[:8]}"


def rewrite_refs(value: Any, names: Mapping[str, str]) -> Any:
    """A copy of ``value`` with local definition references pointing into components."""
    if isinstance(value, dict):
        return {
            key: _rewrite_ref(item, names) if key == "$ref" else rewrite_refs(item, names)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [rewrite_refs(item, names) for item in value]
    return value


def _rewrite_ref(ref: Any, names: Mapping[str, str]) -> Any:
    if not isinstance(ref, str):
        return ref
    for prefix in REF_PREFIXES:
        if ref.startswith(prefix):
            name = ref[len(prefix) :]
            return COMPONENTS_PREFIX + names.get(name, _UNSAFE_NAME.sub("_", name))
    return ref


def without_nul(schema: Any) -> Any:
    """``schema`` (changed in place) with every string and key it allows free of NUL.

    Values it leaves open (a parameter typed ``Any``, the extra fields a nested
    model ignores) become any ``JSONValue`` without NUL.
    """
    if not isinstance(schema, dict):
        return schema
    if not _ANY_KEYWORDS & schema.keys():
        schema["$ref"] = COMPONENTS_PREFIX + JSON_VALUE
        return schema
    _restrict_text(schema)
    for key in _SUBSCHEMA:
        if schema.get(key) is True:
            schema[key] = {"$ref": COMPONENTS_PREFIX + JSON_VALUE}
        elif isinstance(schema.get(key), dict):
            without_nul(schema[key])
    children = [item for key in _SUBSCHEMA_LISTS for item in schema.get(key, [])]
    children += [item for key in _SUBSCHEMA_MAPS for item in (schema.get(key) or {}).values()]
    for child in children:
        without_nul(child)
    return schema


def _restrict_text(schema: dict[str, Any]) -> None:
    """A string schema gets a no-NUL pattern, an object schema no-NUL keys and JSON extras."""
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and not {"enum", "const", "format"} & schema.keys():
        if "pattern" in schema:
            schema.setdefault("allOf", []).append({"pattern": NO_NUL})
        else:
            schema["pattern"] = NO_NUL
    if "object" in types or "properties" in schema:
        schema.setdefault("propertyNames", {"pattern": NO_NUL})
        schema.setdefault("additionalProperties", {"$ref": COMPONENTS_PREFIX + JSON_VALUE})


_SUBSCHEMA = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")


def headers_without_null(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with the ``null`` choice taken out of every header parameter's schema."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") != "header" or "anyOf" not in schema:
                    continue
                choices = [s for s in schema["anyOf"] if s.get("type") != "null"]
                if len(choices) == 1:
                    rest = {k: v for k, v in schema.items() if k != "anyOf"}
                    parameter["schema"] = {**choices[0], **rest}
    return document

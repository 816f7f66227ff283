"""A deployment's run form, built from its parameter schema, and the form read back.

Each parameter becomes a field: nested models become nested fieldsets, enums
selects, dates date inputs, booleans checkboxes, lists of plain values one item
per line; anything the form cannot show as inputs (unions, mappings, lists of
models) is a JSON text area. Reading the form back gives the parameters as
JSON values; an empty optional field is left out, so the deployment's default
applies. The values are then validated exactly as the trigger route validates
a JSON body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from headrace.parameters import non_finite_errors

Kind = str
"""``object``, ``select``, ``checkbox``, ``integer``, ``number``, ``date``, ``datetime``,
``text``, ``lines`` (a list of plain values) or ``json``."""

MAX_DEPTH = 6
SCALARS = {"string", "integer", "number", "boolean"}
_INDEX = re.compile(r"\[\d+\]")
FORMATS = {"date": "date", "date-time": "datetime"}


@dataclass
class Field:
    """One input (or fieldset) of the form, named by its dotted path."""

    path: str
    label: str
    kind: Kind
    required: bool = False
    description: str | None = None
    value: str = ""
    checked: bool = False
    options: list[str] = field(default_factory=list)
    item_type: str = "string"
    children: list[Field] = field(default_factory=list)
    error: str | None = None

    @property
    def dom_id(self) -> str:
        return "p-" + self.path.replace(".", "-")


def build_fields(schema: Mapping[str, Any], values: Mapping[str, Any]) -> list[Field]:
    """The form's fields for ``schema``, prefilled from ``values`` (defaults, or what was sent)."""
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _object_fields(schema, values, "", definitions, 0)


def _object_fields(
    schema: Mapping[str, Any],
    values: Mapping[str, Any],
    prefix: str,
    definitions: Mapping[str, Any],
    depth: int,
) -> list[Field]:
    properties: Mapping[str, Any] = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    ordered = sorted(properties.items(), key=lambda item: item[1].get("position", 0))
    fields = []
    for name, prop in ordered:
        path = f"{prefix}{name}"
        value = values.get(name, prop.get("default")) if isinstance(values, Mapping) else None
        fields.append(_field(path, name, prop, value, name in required, definitions, depth))
    return fields


def _resolve(
    prop: Mapping[str, Any], definitions: Mapping[str, Any]
) -> tuple[Mapping[str, Any], bool]:
    """The property's own schema, ``$ref`` followed and ``X | None`` unwrapped; and
    whether null is allowed."""
    nullable = False
    choices = prop.get("anyOf")
    if isinstance(choices, list):
        others = [c for c in choices if c.get("type") != "null"]
        if len(others) == 1 and len(others) < len(choices):
            nullable = True
            prop = {**prop, **others[0]}
            prop.pop("anyOf", None)
    if len(prop.get("allOf") or []) == 1:
        prop = {**prop, **prop["allOf"][0]}
        prop.pop("allOf", None)
    ref = prop.get("$ref")
    if isinstance(ref, str):
        target = definitions.get(ref.rsplit("/", 1)[-1], {})
        prop = {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop, nullable


def _field(
    path: str,
    name: str,
    prop: Mapping[str, Any],
    value: Any,
    required: bool,
    definitions: Mapping[str, Any],
    depth: int,
) -> Field:
    prop, nullable = _resolve(prop, definitions)
    title = prop.get("title") or name
    label = name if title.lower() == name.lower() else title
    made = Field(path, label, _kind(prop, depth), required and not nullable)
    made.description = prop.get("description")
    if made.kind == "object":
        made.children = _object_fields(
            prop, value if isinstance(value, Mapping) else {}, f"{path}.", definitions, depth + 1
        )
    elif made.kind == "select":
        made.options = [_text(option) for option in prop["enum"]]
    elif made.kind == "checkbox":
        made.checked = value is True
    elif made.kind == "lines":
        made.item_type = _resolve(prop.get("items") or {}, definitions)[0].get("type", "string")
    made.value = _shown(made.kind, value)
    return made


def _kind(prop: Mapping[str, Any], depth: int) -> Kind:
    kind = prop.get("type")
    if "enum" in prop and all(isinstance(o, str | int | float) for o in prop["enum"]):
        return "select"
    if kind == "object" and prop.get("properties") and depth < MAX_DEPTH:
        return "object"
    if kind == "boolean":
        return "checkbox"
    if kind in ("integer", "number"):
        return str(kind)
    if kind == "string":
        return FORMATS.get(prop.get("format", ""), "text")
    items = prop.get("items")
    if (
        kind == "array"
        and isinstance(items, Mapping)
        and items.get("type") in SCALARS - {"boolean"}
    ):
        return "lines"
    return "json"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _shown(kind: Kind, value: Any) -> str:
    """The input's text for ``value``."""
    if value is None or kind in ("object", "checkbox"):
        return ""
    if kind == "lines" and isinstance(value, list):
        return "\n".join(_text(v) for v in value)
    if kind == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    if kind == "datetime" and isinstance(value, str):
        return value[:19]  # what a datetime-local input shows
    return _text(value)


def read_form(
    fields: list[Field], form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The parameters the submitted ``form`` gives, and an error per field it cannot read."""
    errors: dict[str, str] = {}
    values = _read(fields, form, errors)
    for problem in non_finite_errors(values):  # 1e999 and NaN read as floats: not JSON
        errors.setdefault(_INDEX.sub("", problem["parameter"]), problem["message"])
    return values, errors


def _read(fields: list[Field], form: Mapping[str, str], errors: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in fields:
        name = item.path.rsplit(".", 1)[-1]
        if item.kind == "object":
            nested = _read(item.children, form, errors)
            if nested or item.required:
                values[name] = nested
            continue
        if item.kind == "checkbox":
            values[name] = form.get(item.path) == "true"
            continue
        text = form.get(item.path, "")
        if not text.strip():
            continue  # left out: the default applies, or validation names it as missing
        try:
            values[name] = _parsed(item, text)
        except ValueError as exc:
            errors[item.path] = str(exc)
    return values


def _parsed(item: Field, text: str) -> Any:
    text = text.strip()
    if item.kind == "integer":
        return _number(text, int, "a whole number")
    if item.kind == "number":
        return _number(text, float, "a number")
    if item.kind == "lines":
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        caster = {"integer": int, "number": float}.get(item.item_type)
        return [
            _number(line, caster, f"one {item.item_type} per line") if caster else line
            for line in lines
        ]
    if item.kind == "json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"Not valid JSON: {exc}") from None
    if item.kind == "select":
        return next((json.loads(o) for o in item.options if o == text and _is_json_number(o)), text)
    return text


def _is_json_number(text: str) -> bool:
    try:
        return isinstance(json.loads(text), int | float)
    except ValueError:
        return False


def _number(text: str, caster: Any, wanted: str) -> Any:
    try:
        return caster(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not {wanted}") from None


def place_errors(fields: list[Field], errors: Mapping[str, str]) -> list[str]:
    """Put each error on its field (or the nearest field above its path); the errors no
    field holds are returned, for the form's top."""
    by_path = {item.path: item for item in _walk(fields)}
    unplaced = []
    for path, text in errors.items():
        parts = path.split(".")
        while parts and ".".join(parts) not in by_path:
            parts.pop()
        if not parts:
            unplaced.append(f"{path}: {text}" if path else text)
            continue
        target = by_path[".".join(parts)]
        target.error = text if target.error is None else f"{target.error}; {text}"
    return unplaced


def _walk(fields: list[Field]) -> list[Field]:
    found = []
    for item in fields:
        found.append(item)
        found.extend(_walk(item.children))
    return found


def refill(fields: list[Field], form: Mapping[str, str]) -> None:
    """Show what was submitted (not the defaults) when the form comes back with errors."""
    for item in _walk(fields):
        if item.kind == "checkbox":
            item.checked = form.get(item.path) == "true"
        elif item.kind != "object":
            item.value = form.get(item.path, "")

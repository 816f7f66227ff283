"""JSON values headrace accepts: strict JSON, and text every store can keep.

Strict JSON is JSON as the standard has it: ``NaN`` and ``Infinity`` are not
JSON, and a number too large for a float is refused rather than made infinite
(no store keeps either). Nesting is bounded, so a hostile value cannot exhaust
the stack of whoever walks it.

Text every store can keep has no NUL characters and no unpaired surrogates.
PostgreSQL refuses both in text and JSON, and no UTF-8 text can hold an
unpaired surrogate, yet Python strings (and JSON's ``\\ud800`` escapes) can.
What comes from a request is refused. Everything else is repaired at the store
boundary with ``storable`` (each such character becomes U+FFFD), the same way on
every store, so one bad character never fails a write that holds other rows.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_NESTING = 64
"""Deepest nesting of arrays and objects a value from outside may have."""
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")
"""In ``json.dumps`` output (ASCII): an escape that may stand for an unstorable character."""
_MAY_HOLD_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]")
"""In JSON text: an escape of NUL or of a surrogate, or a surrogate's own UTF-8 bytes (which
``json.loads`` lets through). Only a text with one is searched for unstorable strings."""


# -- strict JSON ---------------------------------------------------------------


def reject_constant(name: str) -> Any:
    """A ``parse_constant`` for ``json.loads``: ``NaN`` and ``Infinity`` are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def finite_float(text: str) -> float:
    """A ``parse_float`` for ``json.loads``: a number too large for a float is refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def strict_loads(text: str | bytes) -> Any:
    """``text`` decoded as strict JSON; raises ValueError (or RecursionError when absurdly deep)."""
    return json.loads(text, parse_constant=reject_constant, parse_float=finite_float)


def too_deep(text: bytes, value: Any) -> bool:
    """Whether ``value``, decoded from ``text``, nests more than ``MAX_NESTING`` levels.

    Counting brackets in the text first keeps the common, shallow case a cheap scan.
    """
    return text.count(b"[") + text.count(b"{") > MAX_NESTING and nesting_depth(value) > MAX_NESTING


def nesting_depth(value: Any) -> int:
    """How deeply arrays and objects nest (iteratively: the value may be hostile)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in _children(item))
    return deepest


def _children(value: dict[Any, Any] | list[Any]) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return list(value)


# -- text a store can keep -------------------------------------------------------


def storable(text: str) -> str:
    """``text`` with NUL characters and unpaired surrogates replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text) if _UNSTORABLE.search(text) else text


def storable_value(value: Any) -> Any:
    """A JSON value with ``storable`` applied to every string in it, keys too."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {
            storable(k) if isinstance(k, str) else k: storable_value(v) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [storable_value(item) for item in value]
    return value


def storable_dumps(value: Any) -> str:
    """``json.dumps`` for the store: strings holding what no store can keep are repaired.

    ASCII output escapes every such character, so the common case is one scan of
    the text; only a text with such an escape (or an astral character's pair) is redone.
    """
    text = json.dumps(value)
    if _ESCAPED_UNSTORABLE.search(text) is None:
        return text
    return json.dumps(storable_value(value))


def unstorable_reason(text: str) -> str | None:
    """What in ``text`` no store can keep, or None."""
    if "\x00" in text:
        return "NUL (\\u0000) characters"
    if _UNPAIRED_SURROGATE.search(text):
        return "unpaired surrogates (\\ud800-\\udfff)"
    return None


def find_unstorable_in_json(text: bytes, value: Any) -> tuple[str, str] | None:
    """``find_unstorable`` for ``value`` decoded from the JSON ``text``.

    Most texts cannot hold an unstorable string at all; only those that might are searched.
    """
    if _MAY_HOLD_UNSTORABLE.search(text) is None:
        return None
    return find_unstorable(value)


def find_unstorable(value: Any) -> tuple[str, str] | None:
    """Where a JSON value holds a string no store can keep (a path such as ``tags[1]``, or
    ``""`` for the value itself), and what is wrong; None when it holds none."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if reason := unstorable_reason(item):
                return path, f"strings cannot contain {reason}"
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (reason := unstorable_reason(key)):
                    return path, f"keys cannot contain {reason}"
                stack.append((child, f"{path}.{key}" if path else str(key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None

"""Text every store can keep: no NUL characters and no unpaired surrogates.

PostgreSQL refuses both in text and JSON, and no UTF-8 text can hold an
unpaired surrogate, yet Python strings (and JSON's ``\\ud800`` escapes) can.
What comes from a run is repaired; what comes from a request is refused.
"""

from __future__ import annotations

import re
from typing import Any

_UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with unpaired surrogates replaced by U+FFFD."""
    return _UNPAIRED_SURROGATE.sub("\ufffd", text) if _UNPAIRED_SURROGATE.search(text) else text


def unstorable_reason(text: str) -> str | None:
    """What in ``text`` no store can keep, or None."""
    if "\x00" in text:
        return "NUL (\\u0000) characters"
    if _UNPAIRED_SURROGATE.search(text):
        return "unpaired surrogates (\\ud800-\\udfff)"
    return None


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

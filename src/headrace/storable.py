"""Text every store can keep: no NUL characters and no unpaired surrogates.

PostgreSQL refuses both in text and JSON, and no UTF-8 text can hold an
unpaired surrogate, yet Python strings (and JSON's ``\\ud800`` escapes) can.
What comes from a run is repaired; what comes from a request is refused.
"""

from __future__ import annotations

import re

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

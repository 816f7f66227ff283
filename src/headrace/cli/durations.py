"""Durations as people type them on a command line: ``7d``, ``12h``, ``30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from headrace.cli.errors import UsageProblem

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
EXAMPLES = "like 7d, 12h or 30m (units: s, m, h, d, w)"


def parse_duration(text: str, option: str = "duration") -> timedelta:
    """``7d`` is seven days; a malformed, zero or vast duration is a ``UsageProblem``."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise UsageProblem(
            f"{option}: {text!r} is not a duration: write a number and a unit, {EXAMPLES}"
        )
    amount, unit = float(match[1]), UNITS[match[2]]
    try:
        duration = timedelta(**{unit: amount})
    except OverflowError:
        raise UsageProblem(f"{option}: {text!r} is longer than any date headrace keeps") from None
    if duration <= timedelta(0):
        raise UsageProblem(f"{option}: {text!r} is no time at all: give a duration, {EXAMPLES}")
    return duration

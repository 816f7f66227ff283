"""Times as people type them: ``10m``, ``2h30m``, ``1d`` from now (or ago), or a date and time.

A time without a zone is read in this machine's local time zone. Anything the
ISO 8601 reader of ``dateutil`` does not take is read by its general parser
(``2026-12-08 02:00``, ``Dec 8 2026 2am``); a bare time of day is today's.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from headrace.cli.errors import UsageProblem

DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([smhdw]))", re.IGNORECASE)
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
DURATION_HINT = "a duration such as 30s, 10m, 2h30m, 1d"


def parse_duration(text: str, option: str) -> timedelta:
    """``10m``, ``2h30m``, ``1d``: a duration of weeks, days, hours, minutes and seconds."""
    compact = text.strip().replace(" ", "")
    parts = DURATION.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise UsageProblem(f"{option} {text!r} is not {DURATION_HINT}")
    total = timedelta()
    try:
        for number, unit in parts:
            total += timedelta(**{UNITS[unit.lower()]: float(number)})
    except OverflowError:
        raise UsageProblem(f"{option} {text!r} is longer than any date headrace keeps") from None
    return total


def shifted(now: datetime, text: str, option: str, sign: int) -> datetime:
    """``now`` plus (``sign`` 1) or less (-1) the duration ``text``; one past the calendar's
    ends (year 1 to 9999) is a ``UsageProblem``, not an ``OverflowError``."""
    duration = parse_duration(text, option)
    try:
        return now + sign * duration
    except OverflowError:
        raise UsageProblem(f"{option} {text!r} reaches beyond any date headrace keeps") from None


def parse_time(text: str, option: str, now: datetime) -> datetime:
    """A point in time: ISO 8601, or a date and time ``dateutil`` reads; aware, local if
    no zone is given."""
    from dateutil import parser

    try:
        when = parser.isoparse(text)
    except ValueError:
        try:
            when = parser.parse(text, default=now.astimezone().replace(tzinfo=None))
        except (ValueError, OverflowError):
            raise UsageProblem(
                f"{option} {text!r} is neither a time (2026-12-08T02:00, "
                f"'2026-12-08 02:00+01:00') nor {DURATION_HINT}"
            ) from None
    try:
        return when if when.tzinfo is not None else when.astimezone()
    except (ValueError, OverflowError):
        raise UsageProblem(f"{option} {text!r} is beyond any date headrace keeps") from None


def parse_time_or_ago(text: str, option: str, now: datetime) -> datetime:
    """A time, or a duration meaning that long before ``now`` (``--since 2h``)."""
    try:
        parse_duration(text, option)
    except UsageProblem:
        return parse_time(text, option, now)
    return shifted(now, text, option, -1)

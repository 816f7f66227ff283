"""Times and durations as ``run --at/--in`` and ``runs ls --since/--until`` read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headrace.cli.errors import UsageProblem
from headrace.cli.times import parse_duration, parse_time, parse_time_or_ago, shifted

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("2h30m", timedelta(hours=2, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1W", timedelta(weeks=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "--in") == expected


@pytest.mark.parametrize("text", ["", "10", "soon", "5 minutes", "1h-", "m10"])
def test_what_is_no_duration_is_a_usage_error_naming_the_option(text: str) -> None:
    with pytest.raises(UsageProblem, match=r"^--in .* is not a duration such as 30s"):
        parse_duration(text, "--in")


def test_times_keep_their_zone_and_read_others_as_local() -> None:
    assert parse_time("2026-12-08T02:00+01:00", "--at", NOW) == datetime(
        2026, 12, 8, 1, 0, tzinfo=UTC
    )
    naive = parse_time("2026-12-08 02:00", "--at", NOW)
    assert naive.tzinfo is not None
    assert naive.replace(tzinfo=None) == datetime(2026, 12, 8, 2, 0)  # local wall time
    assert parse_time("Dec 8 2026 2am", "--at", NOW).replace(tzinfo=None) == datetime(
        2026, 12, 8, 2, 0
    )
    with pytest.raises(UsageProblem, match="--at 'tomorrow 02:00' is neither a time"):
        parse_time("tomorrow 02:00", "--at", NOW)


def test_since_takes_a_time_or_a_duration_ago() -> None:
    assert parse_time_or_ago("2h", "--since", NOW) == NOW - timedelta(hours=2)
    assert parse_time_or_ago("2026-12-01T00:00Z", "--since", NOW) == datetime(
        2026, 12, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("read", "message"),
    [
        (lambda: shifted(NOW, "99999999d", "--in", 1), r"^--in '99999999d' reaches beyond"),
        (lambda: parse_time_or_ago("99999999d", "--since", NOW), r"^--since '99999999d' reaches"),
        (lambda: parse_duration("9999999999d", "--in"), r"^--in '9999999999d' is longer"),
        (
            lambda: parse_time("0001-01-01T00:00", "--at", NOW),
            r"^--at '0001-01-01T00:00' is beyond",
        ),
    ],
)
def test_times_past_the_calendars_ends_are_usage_errors(read: Any, message: str) -> None:
    with pytest.raises(UsageProblem, match=message):
        read()

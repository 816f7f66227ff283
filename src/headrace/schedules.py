"""Deployment schedules and when they fire.

A schedule is stored in a database JSON column, so every model here is frozen and
round-trips through ``model_dump(mode="json")``. Nothing in this module reads the
clock or touches I/O: ``next_times`` is told when "now" is. Which runs a
deployment's schedules call for is decided in ``planning``.

Time zones and daylight saving time (the choices, in one place):

* Cron and rrule schedules, and interval schedules whose interval is a whole
  number of days, are evaluated on the **local wall clock** of ``timezone``, so
  "30 2 * * *" stays at 02:30 local all year.
* A wall-clock time that does not exist (spring forward: 02:30 on 2026-03-29 in
  Europe/Berlin) is **shifted forward by the length of the gap**, to 03:30 local
  (PEP 495 ``fold=0``). It fires once.
* A wall-clock time that happens twice (fall back: 02:30 on 2026-10-25 in
  Europe/Berlin) fires **once, at its first occurrence** (summer time). An
  hourly cron therefore has a two-hour gap on that night: each matching wall
  time fires at most once.
* Wall-clock times that map to an instant at or before one already produced are
  dropped, so fire times are strictly increasing and never doubled.
* Interval schedules shorter than a day, or not a whole number of days, keep
  **fixed elapsed spacing** in UTC from their anchor: an hourly interval fires 23
  times on the spring-forward day and 25 times on the fall-back day. (Prefect
  makes the same split.)
* Without an ``anchor_date`` (or an rrule ``DTSTART``) the anchor is
  2020-01-01 00:00 local in the schedule's timezone; a naive anchor is read as
  local time there. Interval times extend both ways from the anchor.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter
from dateutil.rrule import rrule, rruleset, rrulestr
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_serializer,
    field_validator,
)

DEFAULT_TIMEZONE = "UTC"
DEFAULT_ANCHOR = datetime(2020, 1, 1)
"""Naive, read in the schedule's timezone: a fixed anchor keeps results independent of now."""

MAX_TIMES = 1000
"""Hard cap on the times one `next_times` call returns."""

_KEY_LENGTH = 16
_DAY = timedelta(days=1)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r} (expected an IANA name)") from None


def _check_timezone(name: str) -> str:
    _zone(name)
    return name


TimezoneName = Annotated[str, AfterValidator(_check_timezone)]


class CronSchedule(BaseModel):
    """Fires at the wall-clock times a cron expression matches in `timezone`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["cron"] = "cron"
    cron: str
    timezone: TimezoneName = DEFAULT_TIMEZONE
    day_or: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            croniter(value, DEFAULT_ANCHOR).get_next(datetime)
        except CroniterBadDateError:
            raise ValueError(f"cron expression {value!r} never matches a date") from None
        except CroniterError as exc:
            raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value


class IntervalSchedule(BaseModel):
    """Fires every `interval`, counted from `anchor_date` (seconds are accepted too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["interval"] = "interval"
    interval: timedelta
    anchor_date: datetime | None = None
    timezone: TimezoneName = DEFAULT_TIMEZONE

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"interval must be positive, got {value.total_seconds()} seconds")
        return value

    @field_serializer("interval", when_used="json")
    def _seconds(self, value: timedelta) -> float:
        return value.total_seconds()


class RRuleSchedule(BaseModel):
    """Fires on an RFC 5545 recurrence rule, evaluated on the wall clock of `timezone`.

    dateutil walks every occurrence from DTSTART (default `DEFAULT_ANCHOR`), so a
    dense rule (minutely) should carry a recent DTSTART, or be a cron or interval.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["rrule"] = "rrule"
    rrule: str
    timezone: TimezoneName = DEFAULT_TIMEZONE

    @field_validator("rrule")
    @classmethod
    def _valid_rrule(cls, value: str) -> str:
        try:
            next(iter(_parse_rrule(value, ZoneInfo("UTC"))), None)
        except (ValueError, TypeError) as exc:
            advice = "write it as in RFC 5545, e.g. 'FREQ=WEEKLY;BYDAY=MO;BYHOUR=9'"
            if "UNTIL" in str(exc):  # dateutil's words for a floating UNTIL
                advice = (
                    "give UNTIL in UTC with a final Z, e.g. 'FREQ=DAILY;UNTIL=20270101T000000Z'"
                )
            raise ValueError(f"invalid rrule {value!r} ({exc}): {advice}") from None
        return value


def _schedule_kind(value: Any) -> str | None:
    """Read `kind`, or infer it from the defining key so `{"cron": ...}` is enough."""
    if not isinstance(value, dict):
        return getattr(value, "kind", None)
    if "kind" in value:
        return str(value["kind"])
    return next((key for key in ("cron", "interval", "rrule") if key in value), None)


Schedule = Annotated[
    Annotated[CronSchedule, Tag("cron")]
    | Annotated[IntervalSchedule, Tag("interval")]
    | Annotated[RRuleSchedule, Tag("rrule")],
    Discriminator(
        _schedule_kind,
        custom_error_type="schedule_kind",
        custom_error_message="a schedule needs one of cron, interval or rrule",
    ),
]


class DeploymentSchedule(BaseModel):
    """A schedule attached to a deployment, with the parameters its runs get."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schedule: Schedule
    active: bool = True
    parameters: dict[str, Any] = Field(default_factory=dict)
    slug: str | None = None


def schedule_key(schedule: DeploymentSchedule) -> str:
    """Hash what decides which runs exist: the schedule and its parameters.

    `active` and `slug` are left out so pausing or renaming keeps the key. The
    parameters are in so two schedules with the same timing but different
    parameters do not share idempotency keys (one would swallow the other).
    """
    definition = schedule.model_dump(mode="json", include={"schedule", "parameters"})
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:_KEY_LENGTH]


def next_times(
    schedule: Schedule | DeploymentSchedule,
    *,
    after: datetime,
    until: datetime | None = None,
    count: int | None = None,
) -> list[datetime]:
    """Fire times strictly after `after` and at or before `until`, in UTC.

    At least one bound is required so a caller cannot ask for forever; `count`
    is capped at `MAX_TIMES` either way.
    """
    if until is None and count is None:
        raise ValueError("next_times needs until or count")
    require_aware("after", after)
    if until is not None:
        require_aware("until", until)
    if isinstance(schedule, DeploymentSchedule):
        schedule = schedule.schedule
    limit = MAX_TIMES if count is None else min(count, MAX_TIMES)
    times: list[datetime] = []
    for time in _utc_times(schedule, after):
        if len(times) >= limit or (until is not None and time > until):
            break
        if time > after:
            times.append(time)
    return times


def require_aware(name: str, value: datetime) -> None:
    """Refuse a naive datetime: which instant it means would depend on the machine."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _utc_times(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Increasing UTC fire times, starting at or before the first one after `after`."""
    tz = _zone(schedule.timezone)
    match schedule:
        case CronSchedule():
            return _resolved(_cron_walls(schedule, _wall_start(after, tz)), tz)
        case IntervalSchedule() if schedule.interval % _DAY:
            return _elapsed_times(schedule, tz, after)
        case IntervalSchedule():
            return _resolved(_interval_walls(schedule, tz, _wall_start(after, tz)), tz)
        case RRuleSchedule():
            return _resolved(_parse_rrule(schedule.rrule, tz), tz)


def _wall_start(after: datetime, tz: ZoneInfo) -> datetime:
    """The naive local time to start scanning from.

    Uses the smaller of the offsets around `after`, so a wall time in a gap just
    before `after` (which is shifted to after it) is still seen.
    """
    offsets = [(after - _DAY).astimezone(tz).utcoffset(), after.astimezone(tz).utcoffset()]
    offset = min(o for o in offsets if o is not None)
    return (after.astimezone(UTC) + offset).replace(tzinfo=None)


def _resolved(walls: Iterable[datetime], tz: ZoneInfo) -> Iterator[datetime]:
    """Map wall-clock times to UTC, dropping any that do not move forward."""
    latest: datetime | None = None
    for wall in walls:
        local = wall.replace(tzinfo=tz) if wall.tzinfo is None else wall
        time = local.astimezone(UTC)
        if latest is None or time > latest:
            latest = time
            yield time


def _cron_walls(schedule: CronSchedule, start: datetime) -> Iterator[datetime]:
    walls = croniter(schedule.cron, start, day_or=schedule.day_or)
    while True:
        try:
            yield walls.get_next(datetime)
        except CroniterBadDateError:
            return


def _interval_walls(
    schedule: IntervalSchedule, tz: ZoneInfo, start: datetime
) -> Iterator[datetime]:
    anchor = schedule.anchor_date or DEFAULT_ANCHOR
    if anchor.tzinfo is not None:
        anchor = anchor.astimezone(tz).replace(tzinfo=None)
    first = (start - anchor) // schedule.interval
    return (anchor + step * schedule.interval for step in itertools.count(first))


def _elapsed_times(schedule: IntervalSchedule, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    anchor = schedule.anchor_date or DEFAULT_ANCHOR
    if anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=tz)
    anchor = anchor.astimezone(UTC)
    first = (after - anchor) // schedule.interval + 1
    return (anchor + step * schedule.interval for step in itertools.count(first))


def _parse_rrule(text: str, tz: ZoneInfo) -> rrule | rruleset:
    """Parse with a fixed default DTSTART: dateutil would otherwise read the clock."""
    return rrulestr(text, dtstart=DEFAULT_ANCHOR.replace(tzinfo=tz))


def construct_schedule(
    cron: str | None = None,
    interval: float | timedelta | None = None,
    rrule: str | None = None,
    timezone: str | None = None,
    anchor_date: datetime | None = None,
) -> DeploymentSchedule | None:
    """Build a schedule from keyword arguments, as `Flow.serve(cron=...)` takes them."""
    candidates = {"cron": cron, "interval": interval, "rrule": rrule}
    given = [name for name, value in candidates.items() if value is not None]
    if len(given) > 1:
        raise ValueError(f"give at most one of cron, interval, rrule; got {', '.join(given)}")
    if anchor_date is not None and interval is None:
        raise ValueError("anchor_date is only used with interval")
    if not given:
        if timezone is not None:
            raise ValueError("timezone needs one of cron, interval, rrule")
        return None
    tz = DEFAULT_TIMEZONE if timezone is None else timezone
    schedule: Schedule
    if cron is not None:
        schedule = CronSchedule(cron=cron, timezone=tz)
    elif rrule is not None:
        schedule = RRuleSchedule(rrule=rrule, timezone=tz)
    else:
        schedule = IntervalSchedule.model_validate(
            {"interval": interval, "anchor_date": anchor_date, "timezone": tz}
        )
    return DeploymentSchedule(schedule=schedule)

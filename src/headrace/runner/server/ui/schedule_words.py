"""Schedules in words: ``every day at 02:00 Europe/Berlin`` rather than ``0 2 * * *``.

Common cron shapes are put in words; any other expression is shown as written.
"""

from __future__ import annotations

from typing import Any

from headrace.runner.server.ui.formatting import duration
from headrace.schedules import CronSchedule, DeploymentSchedule, IntervalSchedule

DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]


def describe(item: DeploymentSchedule) -> str:
    schedule = item.schedule
    if isinstance(schedule, CronSchedule):
        text = cron_words(schedule.cron)
    elif isinstance(schedule, IntervalSchedule):
        text = interval_words(schedule.interval.total_seconds())
    else:
        text = f"on rule {schedule.rrule}"
    text = f"{text} {schedule.timezone}"
    if not item.active:
        text += " (inactive)"
    return text


def describe_stored(item: dict[str, Any]) -> str:
    """A schedule as stored (JSON), in words, without validating it again."""
    schedule = item.get("schedule") or {}
    if "cron" in schedule:
        text = cron_words(str(schedule["cron"]))
    elif "interval" in schedule:
        text = interval_words(float(schedule["interval"]))
    else:
        text = f"on rule {schedule.get('rrule', '?')}"
    text = f"{text} {schedule.get('timezone', 'UTC')}"
    if not item.get("active", True):
        text += " (inactive)"
    return text


def interval_words(seconds: float) -> str:
    """``every 10 minutes``, ``every 2 hours``, ``every day``, ``every 90 seconds``."""
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"every {unit}" if n == 1 else f"every {n} {unit}s"
    return f"every {duration(seconds)}"


def cron_words(cron: str) -> str:
    fields = cron.split()
    if len(fields) != 5:
        return f"cron {cron}"
    minute, hour, dom, month, dow = fields
    if month != "*" or dom != "*":
        return f"cron {cron}"
    if minute.startswith("*/") and hour == "*" and dow == "*":
        return f"every {minute[2:]} minutes"
    if minute == "*" and hour == "*" and dow == "*":
        return "every minute"
    if not minute.isdigit():
        return f"cron {cron}"
    if hour == "*" and dow == "*":
        return f"every hour at :{int(minute):02d}"
    if not hour.isdigit():
        return f"cron {cron}"
    at = f"{int(hour):02d}:{int(minute):02d}"
    if dow == "*":
        return f"every day at {at}"
    if dow in ("1-5", "MON-FRI", "mon-fri"):
        return f"every weekday at {at}"
    if dow.isdigit() and int(dow) < 7:
        return f"every {DAYS[int(dow)]} at {at}"
    return f"cron {cron}"

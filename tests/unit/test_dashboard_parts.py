"""The dashboard's pure parts: the run form from a schema and back, schedules in words,
charts and the login's return path."""

from __future__ import annotations

from datetime import UTC, datetime

from headrace.runner.server.ui.auth import safe_next
from headrace.runner.server.ui.charts import DurationPoint, duration_dots, hourly_bars
from headrace.runner.server.ui.forms import build_fields, place_errors, read_form
from headrace.runner.server.ui.schedule_words import cron_words, describe_stored, interval_words
from headrace.states import StateType

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "title": "title", "description": "Shown first"},
        "day": {"type": "string", "format": "date", "title": "day", "default": "2026-12-01"},
        "mode": {"$ref": "#/definitions/Mode", "default": "quick"},
        "regions": {"type": "array", "items": {"type": "integer"}, "default": [1, 2]},
        "notify": {"type": "boolean", "default": True},
        "limits": {"$ref": "#/definitions/Limits"},
        "extra": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        "blob": {"type": "object", "additionalProperties": True},
    },
    "required": ["title", "limits"],
    "definitions": {
        "Mode": {"enum": ["full", "quick"], "type": "string"},
        "Limits": {
            "type": "object",
            "properties": {"rows": {"type": "integer", "default": 1000}},
            "required": ["rows"],
        },
    },
}


def test_each_parameter_gets_the_field_of_its_kind() -> None:
    fields = {f.path: f for f in build_fields(SCHEMA, {"title": "T"})}
    assert fields["title"].kind == "text" and fields["title"].value == "T"
    assert fields["title"].required and fields["title"].description == "Shown first"
    assert fields["day"].kind == "date" and fields["day"].value == "2026-12-01"
    assert fields["mode"].kind == "select" and fields["mode"].options == ["full", "quick"]
    assert fields["regions"].kind == "lines" and fields["regions"].value == "1\n2"
    assert fields["notify"].kind == "checkbox" and fields["notify"].checked
    assert fields["limits"].kind == "object"
    assert fields["limits"].children[0].path == "limits.rows"
    assert fields["extra"].kind == "integer" and not fields["extra"].required
    assert fields["blob"].kind == "json"


def test_the_form_reads_back_as_parameters() -> None:
    fields = build_fields(SCHEMA, {})
    form = {
        "title": "T", "day": "2026-12-02", "mode": "full", "regions": "3\n\n4\n",
        "notify": "false", "limits.rows": "5", "extra": "", "blob": '{"a": [1]}',
    }  # fmt: skip
    parameters, errors = read_form(fields, form)
    assert errors == {}
    assert parameters == {
        "title": "T", "day": "2026-12-02", "mode": "full", "regions": [3, 4],
        "notify": False, "limits": {"rows": 5}, "blob": {"a": [1]},
    }  # fmt: skip
    _, errors = read_form(fields, {**form, "limits.rows": "2.5", "blob": "{", "regions": "x"})
    assert set(errors) == {"limits.rows", "blob", "regions"}


def test_errors_land_on_the_nearest_field() -> None:
    fields = build_fields(SCHEMA, {})
    left = place_errors(fields, {"limits.rows": "too big", "blob.a.0": "bad", "other": "no"})
    by_path = {f.path: f for f in fields}
    assert by_path["limits"].children[0].error == "too big"
    assert by_path["blob"].error == "bad"
    assert left == ["other: no"]


def test_schedules_in_words() -> None:
    assert cron_words("0 2 * * *") == "every day at 02:00"
    assert cron_words("*/15 * * * *") == "every 15 minutes"
    assert cron_words("30 9 * * 1-5") == "every weekday at 09:30"
    assert cron_words("0 0 1 * *") == "cron 0 0 1 * *"
    stored = {"schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}, "active": True}
    assert describe_stored(stored) == "every day at 02:00 Europe/Berlin"
    assert describe_stored({"schedule": {"interval": 600.0, "timezone": "UTC"}}) == (
        "every 10 minutes UTC"
    )
    assert interval_words(3600) == "every hour" and interval_words(90) == "every 90 seconds"
    assert interval_words(0.5) == "every 500 ms"


def test_charts_are_svg_with_escaped_labels() -> None:
    now = datetime(2026, 12, 7, 10, 30, tzinfo=UTC)
    bars = hourly_bars({("2026-12-07 10", StateType.FAILED): 3}, now)
    assert bars.startswith("<svg") and 'class="s-failed"' in bars and "3 failed" in bars
    dots = duration_dots([DurationPoint(now, 1.5, StateType.COMPLETED)])
    assert "<circle" in dots and "1.50 s" in dots
    assert "No ended runs" in duration_dots([])


def test_the_login_returns_only_to_this_server() -> None:
    assert safe_next("/ui/runs?state=FAILED") == "/ui/runs?state=FAILED"
    for elsewhere in ("//evil.example", "https://evil.example", "/\\evil.example", None, ""):
        assert safe_next(elsewhere) == "/ui/"

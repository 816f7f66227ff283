"""``HEADRACE_LOG_FORMAT=json``: one JSON object per line, with a record's fields as keys."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from headrace.exceptions import ConfigurationError
from headrace.logconfig import JsonFormatter, formatter_for
from headrace.settings import load_settings


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "headrace.runner.poller", logging.ERROR, __file__, 1, message, args, None
    )
    made.__dict__.update(extra)
    return made


def test_a_line_is_a_json_object_with_time_level_logger_message_and_extra_fields() -> None:
    line = JsonFormatter().format(record("%s failed", "The poll", flow_run_id="5d1c", attempt=2))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "headrace.runner.poller"
    assert entry["message"] == "The poll failed"
    assert entry["timestamp"].endswith("Z") and entry["timestamp"][10] == "T"
    assert (entry["flow_run_id"], entry["attempt"]) == ("5d1c", 2)
    assert "exception" not in entry


def test_an_exception_is_a_field_holding_its_traceback() -> None:
    try:
        raise ConnectionError("connection refused")
    except ConnectionError:
        failed = record("The poll failed; retrying")
        failed.exc_info = sys.exc_info()
    entry = json.loads(JsonFormatter().format(failed))
    assert entry["message"] == "The poll failed; retrying"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ConnectionError: connection refused")


def test_a_run_line_is_the_runs_own_words_in_json_and_named_in_text() -> None:
    line = record("%s | %s", "brisk-otter", "loaded 12 rows", run_line="loaded 12 rows")
    assert json.loads(formatter_for("json").format(line))["message"] == "loaded 12 rows"
    assert "run_line" not in json.loads(formatter_for("json").format(line))
    assert formatter_for("text").format(line).endswith("brisk-otter | loaded 12 rows")


def test_the_format_is_read_from_its_variable_and_a_wrong_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HEADRACE_LOG_FORMAT", "JSON")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("HEADRACE_LOG_FORMAT", "yaml")
    with pytest.raises(ConfigurationError, match="HEADRACE_LOG_FORMAT"):
        load_settings()


def test_a_run_line_holding_a_traceback_puts_it_in_exception() -> None:
    logged = "flows - loading failed\nTraceback (most recent call last):\n  ...\nKeyError: 'x'"
    line = record("%s | %s", "brisk-otter", logged, run_line=logged)
    entry = json.loads(formatter_for("json").format(line))
    assert entry["message"] == "flows - loading failed"
    assert entry["exception"] == "Traceback (most recent call last):\n  ...\nKeyError: 'x'"
    raised = "Traceback (most recent call last):\n  ...\nValueError: boom\n"
    entry = json.loads(formatter_for("json").format(record("x", run_line=raised)))
    assert (entry["message"], entry["exception"]) == ("ValueError: boom", raised.rstrip())
    words = "the log says Traceback (most recent call last): is a header"
    assert "exception" not in json.loads(formatter_for("json").format(record("x", run_line=words)))

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from headrace.cli.durations import parse_duration
from headrace.cli.errors import UsageProblem
from headrace.exceptions import ConfigurationError
from headrace.settings import Settings, load_settings


def test_defaults_match_the_contract(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in list(__import__("os").environ):
        if name.startswith("HEADRACE_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.home == tmp_path / ".headrace"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path}/.headrace/headrace.db"
    assert settings.runner_server_enable is False
    assert settings.runner_server_host == "localhost"
    assert settings.runner_server_port == 8080
    assert settings.runner_server_log_level == "error"
    assert settings.runner_server_missed_polls_tolerance == 2
    assert settings.runner_poll_frequency == 10
    assert settings.runner_process_limit == 5
    assert settings.runner_backlog_limit == 1000
    assert settings.runner_shutdown_grace_seconds == 30
    assert settings.runner_server_allow_unmanaged_flows is False
    assert settings.api_key is None


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADRACE_RUNNER_SERVER_PORT", "9090")
    monkeypatch.setenv("HEADRACE_RUNNER_SERVER_LOG_LEVEL", "INFO")
    monkeypatch.setenv("HEADRACE_DATABASE_URL", "postgresql://u@h/db")
    settings = load_settings()
    assert settings.runner_server_port == 9090
    assert settings.runner_server_log_level == "info"
    assert settings.resolved_database_url == "postgresql://u@h/db"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HEADRACE_RUNNER_PROCESS_LIMIT", "many"),
        ("HEADRACE_RUNNER_SERVER_PORT", "99999"),
        ("HEADRACE_RUNNER_SERVER_ENABLE", "perhaps"),
        ("HEADRACE_RUNNER_SERVER_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=variable):
        load_settings()


def test_settings_can_be_built_directly(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, runner_process_limit=8)
    assert settings.runner_process_limit == 8


@pytest.mark.parametrize(
    ("value", "days"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("0", None),
        ("-3", None),
        ("none", None),
        ("Off", None),
        ("", None),
    ],
)
def test_retention_days_keep_runs_that_long_or_for_ever(
    monkeypatch: pytest.MonkeyPatch, value: str, days: float | None
) -> None:
    monkeypatch.setenv("HEADRACE_RETENTION_DAYS", value)
    settings = load_settings()
    assert settings.retention_days == days
    assert settings.retention == (None if days is None else timedelta(days=days))


def test_retention_is_thirty_days_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADRACE_RETENTION_DAYS", raising=False)
    assert load_settings().retention == timedelta(days=30)


@pytest.mark.parametrize("value", ["a week", "nan", "inf", "1e9"])
def test_a_retention_that_is_no_number_of_days_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("HEADRACE_RETENTION_DAYS", value)
    with pytest.raises(ConfigurationError, match="HEADRACE_RETENTION_DAYS"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "duration"),
    [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
     ("45s", timedelta(seconds=45)), ("2w", timedelta(weeks=2)), ("1.5d", timedelta(hours=36))],
)  # fmt: skip
def test_durations_read_as_typed(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("text", "said"),
    [("7", "is not a duration"), ("7x", "is not a duration"), ("d", "is not a duration"),
     ("-1d", "is not a duration"), ("0m", "no time at all"), ("9e99d", "is not a duration")],
)  # fmt: skip
def test_bad_durations_are_refused_saying_why(text: str, said: str) -> None:
    with pytest.raises(UsageProblem, match=said) as refused:
        parse_duration(text, "--older-than")
    assert str(refused.value).startswith(f"--older-than: {text!r}")

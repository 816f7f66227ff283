from __future__ import annotations

from pathlib import Path

import pytest

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

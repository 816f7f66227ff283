"""Completion of deployment names and run ids: the callbacks on real databases, and the shell
protocol end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from headrace.cli.completion import complete_deployments, complete_runs
from headrace.settings import Settings
from tests.flows import basic
from tests.integration.test_cli import UNREACHABLE_POSTGRES, add_deployment, env, invoke

pytestmark = pytest.mark.timeout(120)
__all__ = ["env"]


@pytest.fixture
def database_env(
    env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> dict[str, str | None]:
    """The callbacks read settings as the shell's ``headrace`` process would: from its env."""
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    return env


def test_callbacks_complete_deployments_and_recent_runs(
    settings: Settings, database_env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    add_deployment(settings, basic.fail, "failer")
    assert complete_deployments("") == [("add/adder", ""), ("fail/failer", "")]
    assert [label for label, _ in complete_deployments("fa")] == ["fail/failer"]
    assert [label for label, _ in complete_deployments("add")] == ["add/adder"]
    created = invoke(database_env, "run", "adder", "-p", "x=1", "--name", "first").stdout.strip()
    assert complete_runs("") == [(created, "first SCHEDULED")]
    assert complete_runs(created[:4]) == [(created, "first SCHEDULED")]
    assert complete_runs("zz") == []


def test_callbacks_complete_nothing_without_a_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADRACE_HOME", str(tmp_path / "nothing"))
    monkeypatch.delenv("HEADRACE_DATABASE_URL", raising=False)
    assert complete_deployments("") == [] and complete_runs("") == []
    assert not (tmp_path / "nothing").exists()  # Tab creates no database

    monkeypatch.setenv("HEADRACE_DATABASE_URL", UNREACHABLE_POSTGRES)
    started = time.monotonic()
    assert complete_runs("") == []
    assert time.monotonic() - started < 10
    monkeypatch.setenv("HEADRACE_RUNNER_PROCESS_LIMIT", "not a number")  # a bad setting
    assert complete_deployments("") == []


def test_bash_completion_protocol(sqlite_settings: Settings, tmp_path: Path) -> None:
    add_deployment(sqlite_settings, basic.add, "adder")
    shell = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    shell.update(
        HEADRACE_HOME=str(sqlite_settings.home),
        HEADRACE_DATABASE_URL=sqlite_settings.resolved_database_url,
        _HEADRACE_COMPLETE="complete_bash",
        COMP_WORDS="headrace deployments inspect ad",
        COMP_CWORD="3",
    )
    completed = subprocess.run(
        [sys.executable, "-m", "headrace"],
        env=shell,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["add/adder"]
    assert completed.stderr == ""

"""``headrace serve`` refuses options that do not fit together, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from headrace.cli import app


def serve(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["serve", *args], env={"HEADRACE_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    )
    return result.exit_code, result.stderr.strip()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["a.py:etl", "b.py:report", "--name", "x", "-p", "a=1"],
            "Error: --name, --param describe one deployment: with several PATH:FUNC, "
            "set them per deployment in headrace.toml",
        ),
        (["a.py:etl", "--file", "headrace.toml"], "Error: Give PATH:FUNC or --file, not both"),
        (
            ["a.py:etl", "b.py:f", "a.py:etl"],
            "Error: a.py:etl is given twice: serve each flow once",
        ),
        (["--file", "missing.toml"], "Error: No project file missing.toml"),
    ],
)
def test_options_that_do_not_fit_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    assert serve(tmp_path, *args) == (2, message)


def test_without_a_project_file_it_says_what_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n')  # no [tool.headrace]
    code, message = serve(tmp_path)
    assert code == 2
    assert message.startswith("Error: Nothing to serve: give PATH:FUNC, or list deployments")
    (tmp_path / "headrace.toml").write_text("[[deployments]\n")
    code, message = serve(tmp_path, "--cron", "0 * * * *")
    assert (code, message) == (
        2,
        "Error: --cron describes one deployment: with a project file (headrace.toml), "
        "set it per deployment in headrace.toml",
    )
    code, message = serve(tmp_path)
    assert code == 2 and message.startswith("Error: headrace.toml: not valid TOML: ")

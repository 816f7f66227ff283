"""Finding and reading the project file: which file, which table, which entrypoints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from headrace.cli.errors import UsageProblem
from headrace.cli.projects import find_project_file, load_project, project_entries
from headrace.exceptions import InvalidProjectFile

DEPLOYMENT = '[[{table}deployments]]\nname = "{name}"\nentrypoint = "{entrypoint}"\n'


def test_headrace_toml_comes_before_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        DEPLOYMENT.format(table="tool.headrace.", name="from-pyproject", entrypoint="a.py:f")
    )
    assert find_project_file(None, tmp_path) == tmp_path / "pyproject.toml"
    assert load_project(tmp_path / "pyproject.toml").deployments[0].name == "from-pyproject"
    (tmp_path / "headrace.toml").write_text(
        DEPLOYMENT.format(table="", name="own", entrypoint="a.py:f")
    )
    assert find_project_file(None, tmp_path) == tmp_path / "headrace.toml"
    given = tmp_path / "elsewhere.toml"
    with pytest.raises(UsageProblem, match="No project file"):
        find_project_file(given, tmp_path)


def test_relative_entrypoints_are_read_from_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))  # modules are looked up beside the file
    (tmp_path / "headrace.toml").write_text(
        DEPLOYMENT.format(table="", name="a", entrypoint="flows/etl.py:etl")
        + DEPLOYMENT.format(table="", name="b", entrypoint="/abs/report.py:report")
        + DEPLOYMENT.format(table="", name="c", entrypoint="package.module:fn")
        + "retries = 3\n"
    )
    entries = project_entries(load_project(tmp_path / "headrace.toml"), tmp_path)
    assert [e.entrypoint for e in entries] == [
        f"{tmp_path}/flows/etl.py:etl",
        "/abs/report.py:report",
        "package.module:fn",
    ]
    assert entries[2].policy["retries"] == 3 and entries[0].policy["retries"] is None
    assert str(tmp_path) in sys.path


def test_a_pyproject_without_the_table_is_named(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(InvalidProjectFile, match=r"pyproject.toml: no \[tool.headrace\] table"):
        load_project(tmp_path / "pyproject.toml")

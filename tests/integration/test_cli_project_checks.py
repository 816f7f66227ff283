"""A project file's deployment whose flow cannot be loaded or checked is an error in that file."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from headrace.cli import app

FLOWS = "from headrace import flow\n\n@flow\ndef parent(x: int = 1) -> int:\n    return x\n"
PROJECT = '[[deployments]]\nname = "parent"\nentrypoint = "{entrypoint}"\n{extra}'


@pytest.mark.parametrize(
    ("entrypoint", "extra", "message"),
    [
        (
            "flows.py:parent",
            "parameters = { bogus = 1 }\n",
            'Error: headrace.toml: deployment "parent": parameters: ',
        ),
        (
            "flows.py:nope",
            "",
            'Error: headrace.toml: deployment "parent": entrypoint: ',
        ),
    ],
)
def test_a_deployment_that_does_not_load_names_the_file_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entrypoint: str, extra: str, message: str
) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "headrace.toml").write_text(PROJECT.format(entrypoint=entrypoint, extra=extra))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEADRACE_DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite'}")
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.output

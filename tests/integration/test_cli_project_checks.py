"""A project file's deployment whose flow cannot be loaded or checked is an error in that file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    tmp_path: Path, entrypoint: str, extra: str, message: str
) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "headrace.toml").write_text(PROJECT.format(entrypoint=entrypoint, extra=extra))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(HEADRACE_HOME=str(tmp_path), HEADRACE_DATABASE_URL=f"sqlite:///{tmp_path}/db")
    # A process of its own: serving tunes the process (migrations in a child, logging).
    result = subprocess.run(
        [sys.executable, "-m", "headrace", "serve"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(message), result.stderr
    assert "Traceback" not in result.stdout + result.stderr

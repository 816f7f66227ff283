"""A flow file that raises while it is imported says where: file, line and code.

``headrace serve`` prints the innermost frames under its error line, and a run
of such a file ends CRASHED with them in its message, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from headrace.cli import app
from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(120)

FLOWS = """\
from headrace import flow
from {helper} import lookup

SETTINGS = {{}}


@flow
def hello() -> None:
    pass


VALUE = lookup(SETTINGS)
"""
HELPER = """\
def lookup(settings):
    return settings["x"]
"""


def broken_flow_file(directory: Path, helper: str) -> Path:
    """A flow file whose import raises KeyError: 'x' in a helper it calls on line 12."""
    (directory / f"{helper}.py").write_text(HELPER)
    path = directory / "flows.py"
    path.write_text(FLOWS.format(helper=helper))
    return path


def assert_says_where(text: str, path: Path, helper: str) -> None:
    """The error, then the frames in the flow file and its helper; no import machinery."""
    assert "raised KeyError while it was imported: 'x'" in text
    assert f'File "{path}", line 12, in <module>\n    VALUE = lookup(SETTINGS)' in text
    in_helper = f'File "{path.parent / helper}.py", line 2, in lookup\n    return settings["x"]'
    assert in_helper in text
    assert "importlib" not in text


def test_serve_shows_the_frames_where_the_import_raised(tmp_path: Path) -> None:
    path = broken_flow_file(tmp_path, "serve_lookup")
    env = {"HEADRACE_HOME": str(tmp_path), "HEADRACE_DATABASE_URL": None, "COLUMNS": "1000"}
    result = CliRunner().invoke(app, ["serve", f"{path}:hello", "--no-webserver"], env=env)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"Error: Script '{path}' raised KeyError")
    assert_says_where(result.stderr, path, "serve_lookup")
    assert "Traceback" not in result.stderr


async def test_a_crashed_run_says_where_the_import_raised(
    settings: Settings, tmp_path: Path
) -> None:
    path = broken_flow_file(tmp_path, "run_lookup")
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add, "broken", entrypoint=f"{path}:hello")
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"x": 1})
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.CRASHED
    assert_says_where(done.state.message or "", path, "run_lookup")

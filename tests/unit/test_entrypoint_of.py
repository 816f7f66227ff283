"""Where a flow loaded from a script file can be found again by another process."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.entrypoints import entrypoint_of, load_flow_from_entrypoint

SCRIPT = """
from headrace import flow

@flow
def hello(name: str = "world") -> str:
    return f"hello {name}"
"""


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_flow_loaded_from_a_script_is_found_again_by_its_file(tmp_path: Path) -> None:
    script = tmp_path / "my_flows.py"
    script.write_text(textwrap.dedent(SCRIPT))
    loaded = load_flow_from_entrypoint(f"{script}:hello")
    entrypoint = entrypoint_of(loaded)
    assert entrypoint == f"{script.resolve()}:hello"
    assert load_flow_from_entrypoint(entrypoint) is loaded
    deployment = loaded.to_deployment("greeter")
    assert deployment.entrypoint == entrypoint


def test_a_flow_in_an_importable_module_keeps_its_module_entrypoint() -> None:
    from tests.flows import basic

    assert entrypoint_of(basic.add) == "tests.flows.basic:add"

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from headrace.entrypoints import (
    absolute_entrypoint,
    flows_in_module,
    is_file_entrypoint,
    load_flow_from_entrypoint,
    load_script_as_module,
    module_of_entrypoint,
    resolve_script,
    split_entrypoint,
)
from headrace.exceptions import (
    EntrypointAttributeNotFound,
    EntrypointError,
    EntrypointFileNotFound,
    EntrypointModuleNotFound,
    EntrypointScriptError,
    InvalidEntrypoint,
    NotAFlow,
)
from headrace.flows import Flow

FLOW_SCRIPT = """
from pathlib import Path

from headrace.flows import flow

with Path(__file__).with_name("count.txt").open("a") as counter:
    counter.write("x")

NOT_A_FLOW = 42


@flow
def hello(name: str = "world") -> str:
    return f"hello {name}"


@flow(name="other")
def other_flow() -> int:
    return 1


alias = hello
"""


@pytest.fixture(autouse=True)
def isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Keep sys.path and sys.modules as they were, whatever the scripts do."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def executions(directory: Path) -> int:
    counter = directory / "count.txt"
    return len(counter.read_text()) if counter.exists() else 0


def test_absolute_file_entrypoint(tmp_path: Path) -> None:
    script = write(tmp_path / "flows.py", FLOW_SCRIPT)
    loaded = load_flow_from_entrypoint(f"{script}:hello")
    assert isinstance(loaded, Flow)
    assert loaded.name == "hello"
    assert loaded(name="you") == "hello you"


def test_relative_file_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "sub" / "flows.py", FLOW_SCRIPT)
    monkeypatch.chdir(tmp_path)
    assert load_flow_from_entrypoint("sub/flows.py:other_flow").name == "other"
    assert load_flow_from_entrypoint("./sub/flows.py:hello").name == "hello"
    assert executions(tmp_path / "sub") == 1


def test_second_load_does_not_reexecute(tmp_path: Path) -> None:
    script = write(tmp_path / "flows.py", FLOW_SCRIPT)
    first = load_script_as_module(script)
    assert load_script_as_module(str(script)) is first
    assert load_flow_from_entrypoint(f"{script}:hello") is first.hello
    assert executions(tmp_path) == 1


def test_changed_file_is_reloaded(tmp_path: Path) -> None:
    script = write(tmp_path / "flows.py", FLOW_SCRIPT)
    first = load_script_as_module(script)
    write(script, FLOW_SCRIPT + "\nADDED = True\n")
    stat = script.stat()
    os.utime(script, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_script_as_module(script)
    assert second.ADDED is True
    assert second is not first and not hasattr(first, "ADDED")
    assert executions(tmp_path) == 2


def test_sibling_imports(tmp_path: Path) -> None:
    write(tmp_path / "helpers_sib.py", "GREETING = 'hi'\n")
    write(
        tmp_path / "main.py",
        """
        from headrace.flows import flow
        from helpers_sib import GREETING

        @flow
        def greet() -> str:
            import lazy_sib  # imported at call time, after loading
            return GREETING + lazy_sib.SUFFIX
        """,
    )
    write(tmp_path / "lazy_sib.py", "SUFFIX = '!'\n")
    loaded = load_flow_from_entrypoint(f"{tmp_path / 'main.py'}:greet")
    assert sys.path[0] != str(tmp_path)
    assert str(tmp_path) in sys.path
    assert loaded() == "hi!"


def test_script_module_is_registered_for_dataclasses(tmp_path: Path) -> None:
    script = write(
        tmp_path / "dc.py",
        """
        from __future__ import annotations
        import dataclasses
        from headrace.flows import flow

        @dataclasses.dataclass
        class Item:
            name: str

        @flow
        def take(item: Item) -> str:
            return item.name
        """,
    )
    loaded = load_flow_from_entrypoint(f"{script}:take")
    assert loaded(item={"name": "a"}) == "a"
    assert "Item" in loaded.parameters.model_dump()["definitions"]


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(EntrypointFileNotFound, match=r"nope\.py"):
        load_flow_from_entrypoint(f"{missing}:hello")


def test_not_a_python_file_does_not_echo_contents(tmp_path: Path) -> None:
    text = write(tmp_path / "secret.txt", "password=hunter2\n")
    with pytest.raises(InvalidEntrypoint) as info:
        load_flow_from_entrypoint(f"{text}:hello")
    assert "hunter2" not in str(info.value)
    with pytest.raises(InvalidEntrypoint):
        load_script_as_module(tmp_path)


def test_script_that_raises(tmp_path: Path) -> None:
    script = write(tmp_path / "bad.py", "x = 1\nraise ValueError('broken on purpose')\n")
    with pytest.raises(EntrypointScriptError) as info:
        load_flow_from_entrypoint(f"{script}:hello")
    error = info.value
    assert "ValueError" in str(error)
    assert "broken on purpose" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert "bad.py" in error.traceback_text  # type: ignore[attr-defined]
    assert "raise ValueError" in error.traceback_text  # type: ignore[attr-defined]
    assert not [name for name in sys.modules if "bad_" in name and "headrace" in name]


def test_script_that_exits_is_a_script_error(tmp_path: Path) -> None:
    script = write(tmp_path / "exits.py", "import sys\nsys.exit(3)\n")
    with pytest.raises(EntrypointScriptError, match="SystemExit"):
        load_script_as_module(script)


def test_missing_attribute(tmp_path: Path) -> None:
    script = write(tmp_path / "flows.py", FLOW_SCRIPT)
    with pytest.raises(EntrypointAttributeNotFound) as info:
        load_flow_from_entrypoint(f"{script}:goodbye")
    assert "goodbye" in str(info.value)
    assert "flows.py" in str(info.value)


def test_not_a_flow(tmp_path: Path) -> None:
    script = write(tmp_path / "flows.py", FLOW_SCRIPT)
    with pytest.raises(NotAFlow, match="NOT_A_FLOW") as info:
        load_flow_from_entrypoint(f"{script}:NOT_A_FLOW")
    assert "NOT_A_FLOW' is an int, not a flow" in str(info.value)


def test_a_relative_file_that_is_not_python_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "notes.txt", "hello\n")  # looks like module ``notes.txt``
    with pytest.raises(InvalidEntrypoint, match=r"'notes\.txt' is not a Python file \(\.py\)"):
        load_flow_from_entrypoint("notes.txt:hello")


@pytest.mark.parametrize(
    "entrypoint",
    ["flows.py", "flows.py:", ":hello", "  :hello", "flows.py:not-a-name", "pkg.mod"],
)
def test_invalid_entrypoints(entrypoint: str) -> None:
    with pytest.raises(InvalidEntrypoint):
        load_flow_from_entrypoint(entrypoint)


def test_every_error_is_an_entrypoint_error(tmp_path: Path) -> None:
    with pytest.raises(EntrypointError):
        load_flow_from_entrypoint(f"{tmp_path / 'x.py'}:f")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh importable package with a flows module, a broken one and a needy one."""
    name = f"pkg_{uuid.uuid4().hex[:8]}"
    write(tmp_path / name / "__init__.py", "")
    write(tmp_path / name / "flows.py", FLOW_SCRIPT)
    write(tmp_path / name / "broken.py", "raise RuntimeError('module broke')\n")
    write(tmp_path / name / "needy.py", "import surely_not_installed_dep\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_module_entrypoint(package: str, tmp_path: Path) -> None:
    loaded = load_flow_from_entrypoint(f"{package}.flows:hello")
    assert loaded() == "hello world"
    assert load_flow_from_entrypoint(f"{package}.flows:hello") is loaded
    assert executions(tmp_path / package) == 1


def test_missing_module(package: str) -> None:
    with pytest.raises(EntrypointModuleNotFound, match="nothere"):
        load_flow_from_entrypoint(f"{package}.nothere:hello")
    with pytest.raises(EntrypointModuleNotFound):
        load_flow_from_entrypoint("surely_not_a_package_xyz.mod:hello")


def test_module_that_raises(package: str) -> None:
    with pytest.raises(EntrypointScriptError, match="module broke") as info:
        load_flow_from_entrypoint(f"{package}.broken:hello")
    assert isinstance(info.value.__cause__, RuntimeError)


def test_module_with_a_missing_dependency_is_a_script_error(package: str) -> None:
    with pytest.raises(EntrypointScriptError, match="surely_not_installed_dep"):
        load_flow_from_entrypoint(f"{package}.needy:hello")


def test_module_attribute_errors(package: str) -> None:
    with pytest.raises(EntrypointAttributeNotFound, match="missing"):
        load_flow_from_entrypoint(f"{package}.flows:missing")
    with pytest.raises(NotAFlow):
        load_flow_from_entrypoint(f"{package}.flows:NOT_A_FLOW")


def test_flows_in_module(tmp_path: Path, package: str) -> None:
    script = write(tmp_path / "flows.py", FLOW_SCRIPT)
    for entrypoint in (f"{script}:hello", f"{package}.flows:hello"):
        module = module_of_entrypoint(entrypoint)
        assert [f.name for f in flows_in_module(module)] == ["hello", "other"]


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        ("flows.py:f", True),
        ("a/b/flows.py:f", True),
        ("/abs/flows.py:f", True),
        ("C:\\flows\\x.py:f", True),
        ("sub/dir:f", True),
        ("package.module:f", False),
        ("module:f", False),
    ],
)
def test_is_file_entrypoint(entrypoint: str, expected: bool) -> None:
    assert is_file_entrypoint(entrypoint) is expected


def test_split_entrypoint_uses_the_last_colon() -> None:
    assert split_entrypoint("C:\\flows\\x.py:f") == ("C:\\flows\\x.py", "f")


def test_absolute_entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "flows.py", FLOW_SCRIPT)
    assert absolute_entrypoint("flows.py:hello") == f"{tmp_path.resolve() / 'flows.py'}:hello"
    assert absolute_entrypoint("package.module:f") == "package.module:f"
    with pytest.raises(EntrypointFileNotFound, match=r"'gone\.py' \(resolved to "):
        absolute_entrypoint("gone.py:f")


def test_resolve_script_refuses_other_files_before_looking_at_them(tmp_path: Path) -> None:
    with pytest.raises(InvalidEntrypoint, match=r"is not a Python file \(\.py\)"):
        resolve_script(tmp_path / "absent.txt")
    (tmp_path / "dir.py").mkdir()
    with pytest.raises(InvalidEntrypoint, match="is not a file"):
        resolve_script(tmp_path / "dir.py")

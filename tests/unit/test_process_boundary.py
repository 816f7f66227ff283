"""A run's process stays light: ``headrace.process`` imports no store, runner or web stack."""

from __future__ import annotations

import ast
from pathlib import Path

import headrace.process

PACKAGE = Path(headrace.process.__file__).parent
FORBIDDEN = ("headrace.store", "headrace.runner", "sqlalchemy", "fastapi", "starlette", "uvicorn")


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_process_package_imports_nothing_heavy() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 1
    for path in modules:
        heavy = {
            name
            for name in imported(path)
            if any(name == root or name.startswith(root + ".") for root in FORBIDDEN)
        }
        assert not heavy, f"{path.name} imports {sorted(heavy)}"


def test_the_package_itself_imports_nothing() -> None:
    assert imported(PACKAGE / "__init__.py") == set()

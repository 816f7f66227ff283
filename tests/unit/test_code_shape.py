"""The package keeps the shape its layers promise: small modules, short functions.

Migrations are exempt: each is a frozen record of a schema change, never edited.
"""

from __future__ import annotations

import ast
from pathlib import Path

import headrace

PACKAGE = Path(headrace.__file__).parent
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _sources() -> list[Path]:
    migrations = PACKAGE / "store" / "migrations" / "versions"
    return [path for path in PACKAGE.rglob("*.py") if migrations not in path.parents]


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in _sources()
        if (lines := path.read_text().count("\n")) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_50_lines() -> None:
    long: dict[str, int] = {}
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"] = lines
    assert long == {}


def test_the_checks_see_the_whole_package() -> None:
    names = {str(path.relative_to(PACKAGE)) for path in _sources()}
    assert {"runner/server/app.py", "process/child.py", "cli/__init__.py"} <= names
    assert not any(name.startswith("store/migrations/versions/") for name in names)

"""The import space: the flows ``POST /flow/run`` may start, found without running strangers' code.

A runner's import space is every flow bound to a name in the modules of its
deployments' entrypoints (so also the flows those modules import): the
reference's rule. The reference found a requested flow by importing whatever
file the caller named and only then checked it; here an entrypoint outside the
import space is refused *before* anything is executed, unless unmanaged flows
are allowed. Inside it, a module that has not changed since the server was
built is used as it is; a changed file is loaded again, which is how a changed
parameter schema is noticed.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from headrace.deployments import Deployment
from headrace.entrypoints import (
    absolute_entrypoint,
    flow_attribute,
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
    EntrypointModuleNotFound,
    InvalidEntrypoint,
)
from headrace.flows import Flow

logger = logging.getLogger(__name__)

AnyFlow = Flow[..., Any]


@dataclass
class ImportSpace:
    """Flow name -> parameter schema, plus the files and modules those flows come from."""

    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[Path, tuple[int, ModuleType]] = field(default_factory=dict)
    modules: set[str] = field(default_factory=set)

    def add_module(self, module: ModuleType) -> None:
        self._remember(module)
        for flow in flows_in_module(module):
            self.add_flow(flow)

    def add_flow(self, flow: AnyFlow) -> None:
        self.schemas.setdefault(flow.name, flow.parameters.model_dump())
        defining = sys.modules.get(getattr(flow.fn, "__module__", "") or "")
        if defining is not None:
            self._remember(defining)

    def _remember(self, module: ModuleType) -> None:
        self.modules.add(module.__name__)
        path = _module_file(module)
        if path is not None:
            self.files.setdefault(path, (_mtime_ns(path), module))

    def is_managed(self, flow: AnyFlow) -> bool:
        return flow.name in self.schemas

    def schema_changed(self, flow: AnyFlow) -> bool:
        known = self.schemas.get(flow.name)
        return known is not None and known != flow.parameters.model_dump()

    def find_flow(self, entrypoint: str, *, allow_unmanaged: bool) -> AnyFlow | None:
        """The flow ``entrypoint`` names, or None when it lies outside the import space.

        Raises an ``EntrypointError`` when there is no such flow. Outside the
        import space nothing is loaded unless ``allow_unmanaged``. May execute
        a script (a changed or allowed one): call it off the event loop.
        """
        where, name = split_entrypoint(entrypoint)
        if is_file_entrypoint(entrypoint):
            return self._find_in_file(resolve_script(where), name, allow_unmanaged)
        module = sys.modules.get(where)
        if module is not None:
            return flow_attribute(module, where, name)
        if where not in self.modules and not allow_unmanaged:
            if not _importable(where):
                raise EntrypointModuleNotFound(f"Module not found: {where!r}")
            served = self._served_script(where)
            if served is not None:
                return self._find_in_file(served, name, allow_unmanaged)
            origin = _module_origin(where)
            if origin is not None:
                _check_binds(origin, where, name)
            return None
        return load_flow_from_entrypoint(entrypoint)

    def run_entrypoint(self, entrypoint: str) -> str:
        """Where a run of ``entrypoint`` loads its flow: a file by its absolute path, and a
        served script by its path even when named as a module, so the run finds it loaded."""
        if is_file_entrypoint(entrypoint):
            return absolute_entrypoint(entrypoint)
        where, name = split_entrypoint(entrypoint)
        served = None if where in self.modules else self._served_script(where)
        return entrypoint if served is None else f"{served}:{name}"

    def _served_script(self, module_name: str) -> Path | None:
        """The served script a module name would import (``flows`` for a served ``flows.py``,
        as ``submit_to_runner`` names a flow imported from it), or None."""
        origin = _module_origin(module_name)
        path = origin.resolve() if origin is not None else None
        return path if path in self.files else None

    def _find_in_file(self, path: Path, name: str, allow_unmanaged: bool) -> AnyFlow | None:
        known = self.files.get(path)
        if known is not None and known[0] == _mtime_ns(path):
            return flow_attribute(known[1], str(path), name)
        if known is None and not allow_unmanaged:
            _check_binds(path, str(path), name)
            return None
        return flow_attribute(load_script_as_module(path), str(path), name)


def collect_import_space(
    deployments: Iterable[Deployment], flows: Iterable[AnyFlow]
) -> ImportSpace:
    """Load each deployment's entrypoint module and note every flow in it."""
    space = ImportSpace()
    for deployment in deployments:
        if not deployment.entrypoint:
            continue
        try:
            space.add_module(_entrypoint_module(deployment.entrypoint))
        except EntrypointError as exc:
            logger.warning(
                "Deployment %r: cannot load %r for the webserver: %s",
                deployment.name,
                deployment.entrypoint,
                exc,
            )
    for flow in flows:
        space.add_flow(flow)
    return space


def _entrypoint_module(entrypoint: str) -> ModuleType:
    """The module an entrypoint lives in, reusing one already loaded from the same file."""
    where, _ = split_entrypoint(entrypoint)
    if not is_file_entrypoint(entrypoint):
        module = sys.modules.get(where)
        return module if module is not None else module_of_entrypoint(entrypoint)
    path = resolve_script(where)
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if isinstance(file, str) and file.endswith(path.name) and _module_file(module) == path:
            return module  # e.g. ``__main__``: do not run the user's script a second time
    return load_script_as_module(path)


def _check_binds(path: Path, where: str, name: str) -> None:
    """Refuse (as not found) a name the file never binds at top level, without running it.

    Outside the import space nothing is executed, but a name that is plainly
    missing, or a file that is not Python, is still "not found" rather than
    "forbidden", as it would be if the file were loaded.
    """
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError) as exc:
        raise InvalidEntrypoint(f"{where!r} is not a Python file") from exc
    names = _top_level_names(tree)
    if names is not None and name.split(".")[0] not in names:
        raise EntrypointAttributeNotFound(f"{where!r} has no attribute {name!r}")


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module binds at top level; None when a star import hides them."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any(alias.name == "*" for alias in node.names):
                return None
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            names.update(
                target.id
                for target in ast.walk(node)
                if isinstance(target, ast.Name) and isinstance(target.ctx, ast.Store)
            )
    return names


def _module_origin(module_name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _importable(module_name: str) -> bool:
    """Whether the top-level package exists, found without executing anything."""
    top = module_name.partition(".")[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _module_file(module: ModuleType) -> Path | None:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    try:
        return Path(file).resolve()
    except (OSError, RuntimeError):
        return None


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1

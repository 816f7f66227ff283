"""Entrypoints: how a flow is found again in another process.

An entrypoint is ``path/to/file.py:function`` (relative to the working
directory, or absolute) or ``package.module:function``. Each way it can fail is
its own exception so that the CLI and the webserver can say exactly what is
wrong; a script that raises is shown with the innermost frames of its
traceback, so the message says in which file and line. Scripts are executed
once per content version: loading the same file again returns the module
already built, so a runner that resolves an entrypoint for every run does not
re-run the script's top-level code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import threading
import traceback
from pathlib import Path
from types import ModuleType

from headrace.exceptions import (
    EntrypointAttributeNotFound,
    EntrypointFileNotFound,
    EntrypointModuleNotFound,
    EntrypointScriptError,
    InvalidDeployment,
    InvalidEntrypoint,
    NotAFlow,
)
from headrace.flows import Flow

SCRIPT_MODULE_PREFIX = "__headrace_script__"
SHOWN_FRAMES = 3
"""How many frames of an import error's traceback its message shows: enough to find the line."""
_MACHINERY = ("<frozen ", str(Path(importlib.__file__).parent), str(Path(__file__).parent))

_MODULE_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_]\w*$")

# resolved path -> (mtime_ns, module)
_scripts: dict[Path, tuple[int, ModuleType]] = {}
_scripts_lock = threading.RLock()


def split_entrypoint(entrypoint: str) -> tuple[str, str]:
    """Split ``where:name``; the last colon separates them so Windows drives survive."""
    where, colon, name = entrypoint.rpartition(":") if isinstance(entrypoint, str) else ("", "", "")
    if not colon or not where.strip() or not name.strip():
        raise InvalidEntrypoint(
            f"Invalid entrypoint {entrypoint!r}: expected 'path/to/file.py:function_name' "
            "or 'package.module:function_name'"
        )
    if not _IDENTIFIER.match(name):
        raise InvalidEntrypoint(
            f"Invalid entrypoint {entrypoint!r}: {name!r} is not a Python identifier"
        )
    return where, name


def is_file_entrypoint(entrypoint: str) -> bool:
    """True for ``file.py:func`` and paths; False for ``package.module:func``."""
    where = entrypoint.rpartition(":")[0] or entrypoint
    return where.endswith(".py") or "/" in where or "\\" in where or not _MODULE_NAME.match(where)


def load_script_as_module(path: str | Path) -> ModuleType:
    """Execute a ``.py`` file as a module, once per version of the file.

    The script's directory is first on ``sys.path`` while it runs, so sibling
    imports work; afterwards it stays on ``sys.path`` but at the end, so imports
    made later from inside the flow still find siblings without the script's
    directory shadowing other modules.
    """
    resolved = resolve_script(path)
    mtime_ns = resolved.stat().st_mtime_ns
    with _scripts_lock:
        cached = _scripts.get(resolved)
        if cached is not None and cached[0] == mtime_ns:
            return cached[1]
        module = _execute_script(resolved)
        _scripts[resolved] = (mtime_ns, module)
        return module


def resolve_script(where: str | Path) -> Path:
    """The absolute path of a ``.py`` entrypoint file, checked without reading it.

    The suffix is checked before the file system is asked, so a webserver
    caller naming some other file learns nothing about it.
    """
    try:
        candidate = Path(where).expanduser()
        path = (candidate if candidate.is_absolute() else Path.cwd() / candidate).resolve()
        python = path.suffix == ".py"
        exists, is_file = python and path.exists(), python and path.is_file()
    except (OSError, ValueError, RuntimeError) as exc:
        raise InvalidEntrypoint(f"{str(where)!r} is not a usable path") from exc
    if not python:
        raise InvalidEntrypoint(f"{str(where)!r} is not a Python file (.py)")
    if not exists:
        raise EntrypointFileNotFound(f"File not found: {str(where)!r} (resolved to {path})")
    if not is_file:
        raise InvalidEntrypoint(f"{str(where)!r} is not a file")
    return path


def absolute_entrypoint(entrypoint: str) -> str:
    """A file entrypoint with its path made absolute, so a child process finds it from
    any directory; ``package.module:function`` as it is."""
    where, name = split_entrypoint(entrypoint)
    if not is_file_entrypoint(entrypoint):
        return entrypoint
    return f"{resolve_script(where)}:{name}"


def _script_module_name(path: Path) -> str:
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", path.stem)
    return f"{SCRIPT_MODULE_PREFIX}{stem}_{digest}"


def _execute_script(path: Path) -> ModuleType:
    name = _script_module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - .py files always have one
        raise InvalidEntrypoint(f"{str(path)!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module  # dataclasses and pydantic look classes' modules up here
    directory = str(path.parent)
    sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        _restore_module(name, previous)
        raise _script_error(f"Script {str(path)!r}", exc) from exc
    finally:
        _move_to_end_of_path(directory)
    return module


def _restore_module(name: str, previous: ModuleType | None) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous


def _move_to_end_of_path(directory: str) -> None:
    if directory in sys.path:  # the script may have edited sys.path itself
        sys.path.remove(directory)
    if directory not in sys.path:
        sys.path.append(directory)


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def _script_error(where: str, exc: BaseException) -> EntrypointScriptError:
    """The error, with the innermost frames of its traceback: where in the user's code it was."""
    text = f"{where} raised {type(exc).__name__} while it was imported: {exc}"
    frames = last_frames(exc)
    error = EntrypointScriptError(f"{text}\n{frames}" if frames else text)
    error.traceback_text = "".join(traceback.format_exception(exc))
    return error


def last_frames(exc: BaseException, count: int = SHOWN_FRAMES) -> str:
    """The innermost ``count`` frames of ``exc``'s traceback, as Python prints them (file,
    line, function, code), leaving out the import machinery's and headrace's own."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith(_MACHINERY)
    ]
    return "".join(traceback.StackSummary.from_list(frames[-count:]).format()).rstrip()


def _import_module(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_self_or_parent(exc.name, module_name):
            if Path(module_name).is_file():  # ``notes.txt:f``: a file, but no Python one
                raise InvalidEntrypoint(
                    f"{module_name!r} is not a Python file (.py) nor a module"
                ) from None
            raise EntrypointModuleNotFound(f"Module not found: {module_name!r}") from exc
        raise _script_error(f"Module {module_name!r}", exc) from exc
    except (Exception, SystemExit) as exc:
        raise _script_error(f"Module {module_name!r}", exc) from exc


def _is_self_or_parent(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def module_of_entrypoint(entrypoint: str) -> ModuleType:
    """The module an entrypoint's flow lives in, loaded or imported once."""
    where, _ = split_entrypoint(entrypoint)
    if is_file_entrypoint(entrypoint):
        return load_script_as_module(where)
    return _import_module(where)


def load_flow_from_entrypoint(entrypoint: str) -> Flow[..., object]:
    """The Flow an entrypoint names, or a specific EntrypointError saying why not."""
    where, name = split_entrypoint(entrypoint)
    return flow_attribute(module_of_entrypoint(entrypoint), where, name)


def flow_attribute(module: ModuleType, where: str, name: str) -> Flow[..., object]:
    """The Flow bound to ``name`` in ``module`` (loaded from ``where``), or why not."""
    try:
        value = getattr(module, name)
    except AttributeError:
        raise EntrypointAttributeNotFound(f"{where!r} has no attribute {name!r}") from None
    if not isinstance(value, Flow):
        raise NotAFlow(
            f"{f'{where}:{name}'!r} is {_a(type(value).__name__)}, not a flow; "
            "decorate it with @flow"
        )
    return value


def flows_in_module(module: ModuleType) -> list[Flow[..., object]]:
    """Every Flow bound to a name in the module, each once, in definition order."""
    found: dict[int, Flow[..., object]] = {}
    for value in list(vars(module).values()):
        if isinstance(value, Flow):
            found.setdefault(id(value), value)
    return list(found.values())


def entrypoint_of(flow: Flow[..., object]) -> str:
    """Where a child process can load ``flow`` from: ``module:func`` or ``/abs/file.py:func``."""
    module_name = flow.fn.__module__
    module = sys.modules.get(module_name)
    func = flow.fn.__qualname__
    file = getattr(module, "__file__", None)
    spec = getattr(module, "__spec__", None)
    importable = spec is not None and spec.name == module_name and spec.origin == file
    # A script loaded by path has a made-up module name no other process can import.
    by_path = module_name == "__main__" or module_name.startswith(SCRIPT_MODULE_PREFIX)
    if module is not None and importable and not by_path:
        return f"{module_name}:{func}"
    if file is None:
        raise InvalidDeployment(
            f"Cannot tell where flow {flow.name!r} is defined; define it in a file or module"
        )
    return f"{Path(file).resolve()}:{func}"

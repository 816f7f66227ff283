"""What ``headrace serve`` serves: the entrypoints given, or the project file's deployments.

The project file is ``headrace.toml`` in the working directory, else the
``[tool.headrace]`` table of ``pyproject.toml`` there, else the file
``--file`` names. Its relative entrypoints are read from the file's directory,
so the project serves the same flows from wherever it is started.
"""

from __future__ import annotations

import contextlib
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from headrace.cli.errors import UsageProblem
from headrace.exceptions import (
    EntrypointError,
    EntrypointScriptError,
    InvalidDeployment,
    InvalidProjectFile,
    ParameterValidationError,
)

if TYPE_CHECKING:
    from headrace.cli.serve import ToServe
    from headrace.projects import Project, ProjectDeployment

PROJECT_FILE = "headrace.toml"
PYPROJECT_FILE = "pyproject.toml"


def find_project_file(given: Path | None, directory: Path) -> Path:
    """The project file to serve: ``given``, else the one found in ``directory``."""
    if given is not None:
        if not given.is_file():
            raise UsageProblem(f"No project file {given}")
        return given
    if (directory / PROJECT_FILE).is_file():
        return directory / PROJECT_FILE
    pyproject = directory / PYPROJECT_FILE
    if pyproject.is_file() and "headrace" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    raise UsageProblem(
        f"Nothing to serve: give PATH:FUNC, or list deployments in {PROJECT_FILE} "
        f"(or [tool.headrace] in {PYPROJECT_FILE}) in {directory}, or name one with --file"
    )


def load_project(path: Path) -> Project:
    """The project in ``path`` (its ``[tool.headrace]`` table for a ``pyproject.toml``)."""
    from headrace.projects import parse_project

    data = _read_toml(path)
    if path.name == PYPROJECT_FILE:
        data = data.get("tool", {}).get("headrace")
        if not isinstance(data, dict):
            raise InvalidProjectFile(f"{path.name}: no [tool.headrace] table")
    return parse_project(data, path.name)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidProjectFile(f"{path.name}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise InvalidProjectFile(f"{path}: cannot be read: {exc.strerror}") from None


def project_entries(project: Project, directory: Path, source: str = PROJECT_FILE) -> list[ToServe]:
    """Each deployment of ``project`` (read from the file ``source``), its entrypoint read
    from ``directory``."""
    from headrace.entrypoints import is_file_entrypoint

    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))  # module entrypoints beside the project file
    entries = []
    for deployment in project.deployments:
        entrypoint = deployment.entrypoint
        if is_file_entrypoint(entrypoint):
            where, _, name = entrypoint.rpartition(":")
            entrypoint = f"{directory / Path(where).expanduser()}:{name}"
        origin = f'{source}: deployment "{deployment.name or deployment.entrypoint}"'
        entries.append(_entry(deployment, entrypoint, origin))
    return entries


def _entry(deployment: ProjectDeployment, entrypoint: str, origin: str) -> ToServe:
    from headrace.cli.serve import ToServe

    policy = {
        "retries": deployment.retries,
        "retry_delay_seconds": deployment.retry_delay_seconds,
        "timeout_seconds": deployment.timeout_seconds,
    }
    return ToServe(entrypoint, deployment.name, deployment.options(), policy, origin)


def refuse_per_deployment(given: dict[str, bool], why: str) -> None:
    """A usage error when an option that describes a single deployment was given."""
    flags = [flag for flag, was_given in given.items() if was_given]
    if flags:
        raise UsageProblem(
            f"{', '.join(flags)} describe{'s' * (len(flags) == 1)} one deployment: {why}, "
            f"set {'it' if len(flags) == 1 else 'them'} per deployment in {PROJECT_FILE}"
        )


@contextlib.contextmanager
def described_at(origin: str | None) -> Iterator[None]:
    """A deployment the project file describes that fails to load or check is an error in
    that file: ``headrace.toml: deployment "etl": entrypoint: ...`` (``origin`` None: as is).
    A script that raises while imported stays itself: its frames say where."""
    if origin is None:
        yield
        return
    try:
        yield
    except (EntrypointScriptError, InvalidProjectFile):
        raise
    except EntrypointError as exc:
        raise InvalidProjectFile(f"{origin}: entrypoint: {exc}") from None
    except InvalidDeployment as exc:
        if isinstance(exc.__cause__, ParameterValidationError) and "default" in str(exc):
            raise InvalidProjectFile(f"{origin}: parameters: {exc.__cause__}") from None
        detail = _DEPLOYMENT_PREFIX.sub("", str(exc), count=1)
        raise InvalidProjectFile(f"{origin}: {detail}") from None


_DEPLOYMENT_PREFIX = re.compile(r"^Deployment (['\"]).*?\1:? *")
"""How a deployment's own errors begin (``Deployment 'etl': ...``): the origin says it."""

"""The result store: where a result larger than a run's row keeps is written whole.

A directory (``HEADRACE_HOME/results`` by default) or any fsspec URL
(``HEADRACE_RESULT_STORAGE``); fsspec is imported only for a URL with a
scheme. The run's process writes the result before it reports its end, so the
reference the runner stores always names a whole file: written to a temporary
name, flushed to disk, then renamed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import RESULT_SIZE_LIMIT, FlowRun
from headrace.process.protocol import Completed
from headrace.states import StateType

RESULT_STORAGE_VARIABLE = "HEADRACE_RESULT_STORAGE"
"""Where a run's process writes large results (the runner passes its setting on)."""


def has_scheme(location: str) -> bool:
    """``s3://bucket/x`` or ``memory://x``: an fsspec URL; anything else is a local path."""
    scheme, sep, _ = location.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme != "file"


def write_result(location: str, name: str, data: bytes) -> str:
    """Write ``data`` as ``name`` under ``location`` durably; the reference to read it by."""
    if has_scheme(location):
        return _write_url(location, name, data)
    directory = Path(location.removeprefix("file://")).expanduser().absolute()
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / name
    temporary = directory / f".{name}.{os.getpid()}.tmp"
    with open(temporary, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    _fsync_directory(directory)  # the rename itself survives a power loss too
    return str(final)


def read_result(ref: str) -> bytes:
    """The bytes a ``write_result`` reference names (``OSError`` when they are gone)."""
    if not has_scheme(ref):
        return Path(ref.removeprefix("file://")).read_bytes()
    fs, path = _filesystem(ref)
    data: bytes = fs.cat_file(path)
    return data


def _write_url(location: str, name: str, data: bytes) -> str:
    fs, root = _filesystem(location)
    final = f"{root.rstrip('/')}/{name}"
    temporary = f"{root.rstrip('/')}/.{name}.{os.getpid()}.tmp"
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(temporary, data)
    fs.mv(temporary, final)
    ref: str = fs.unstrip_protocol(final)
    return ref


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec  # type: ignore[import-untyped]  # optional (the ``results`` extra): needed only for URLs

    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - a filesystem that cannot sync a directory
        pass
    finally:
        os.close(fd)


def stored_result(value: Any, size: int, location: str | None, name: str) -> Completed:
    """A result of ``size`` bytes, too large for the row: written whole to ``location`` and
    referenced, or (no store, or it failed) not kept, with a message saying why."""
    from pydantic_core import to_json

    from headrace.jsonvalues import storable_value

    why = f"over the {RESULT_SIZE_LIMIT:,} bytes a run keeps"
    if location is not None:
        try:
            return Completed(None, result_ref=write_result(location, name, to_json(value)))
        except ValueError:  # an unpaired surrogate: stored as the row would store it
            return Completed(
                None, result_ref=write_result(location, name, to_json(storable_value(value)))
            )
        except Exception as exc:
            why = f"{why}, and writing it to {location} failed: {exc}"
    note = f"The result was not stored: its JSON is {size:,} bytes, {why}"
    return Completed(None, note, result_truncated=True)


UNENCODABLE = "is not JSON-encodable"
"""Part of the state message of a run whose result JSON cannot hold (``encode_result``)."""


def result_of(run: FlowRun) -> Any:
    """The whole result of a COMPLETED run: from its row, or read from the result store.

    ``InvalidStateTransition`` when it has none (not completed, or not kept: the message
    says why); ``ObjectNotFound`` when the result store no longer holds it.
    """
    state = run.state
    if state.type != StateType.COMPLETED:
        raise InvalidStateTransition(
            f"Flow run {run.name} has no result: it is {state.name}, not Completed"
        )
    unkept = run.result_truncated or UNENCODABLE in (state.message or "")
    if run.result_ref is None and unkept:
        raise InvalidStateTransition(f"Flow run {run.name} has no result: {state.message}")
    if run.result_ref is None:
        return run.result
    try:
        return json.loads(read_result(run.result_ref))
    except (OSError, ValueError) as exc:
        raise ObjectNotFound(
            f"The result of flow run {run.name} cannot be read from {run.result_ref}: {exc}"
        ) from exc

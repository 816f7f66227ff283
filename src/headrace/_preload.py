"""Imported by the fork server at start: load the served flows once, for every run to inherit.

The runner names the entrypoints in ``HEADRACE_PRELOAD_ENTRYPOINTS`` (separated
by the OS path separator) before the fork server starts. A flow that fails to
load here is skipped: its runs report the error themselves.
"""

from __future__ import annotations

import contextlib
import os

from headrace.entrypoints import load_flow_from_entrypoint
from headrace.exceptions import HeadraceError

PRELOAD_VARIABLE = "HEADRACE_PRELOAD_ENTRYPOINTS"


def preload(entrypoints: list[str]) -> None:
    for entrypoint in entrypoints:
        with contextlib.suppress(HeadraceError, Exception):
            flow = load_flow_from_entrypoint(entrypoint)
            flow.parameters  # noqa: B018 - builds the validation model now, once


preload([e for e in os.environ.get(PRELOAD_VARIABLE, "").split(os.pathsep) if e])

"""The runner: serve deployments and execute their runs in child processes."""

from __future__ import annotations

from headrace.runner.runner import Runner
from headrace.runner.serving import serve

__all__ = ["Runner", "serve"]

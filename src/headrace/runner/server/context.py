"""What every route of the runner webserver shares, resolved once when the app is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from headrace.runner.server.backlog import Backlog
from headrace.runner.server.import_space import ImportSpace
from headrace.settings import Settings
from headrace.store import AsyncStore

if TYPE_CHECKING:
    from headrace.runner.runner import Runner


@dataclass
class ServerContext:
    """The runner, its store and settings, the backlog, the import space, and lifecycle flags."""

    runner: Runner
    store: AsyncStore
    settings: Settings
    backlog: Backlog
    space: ImportSpace
    closing: bool = False
    """Set when the server shuts down: long polls and log streams end early."""
    stop_server: Callable[[], None] | None = None
    """Stops a standalone server on ``POST /shutdown`` (an embedded one stops with its runner)."""

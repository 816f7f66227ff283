"""What every route of the runner webserver shares, resolved once when the app is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from headrace.client import HeadraceClient
from headrace.runner.server.backlog import Backlog
from headrace.runner.server.import_space import ImportSpace
from headrace.settings import Settings
from headrace.store import AsyncStore

if TYPE_CHECKING:
    from headrace.runner.runner import Runner


@dataclass
class ServerContext:
    """The runner, a client and the store, settings, the backlog, the import space, the
    served deployments' JSON, and lifecycle flags."""

    runner: Runner
    client: HeadraceClient
    """Reads and cancels runs for the routes that only do what the Python client does."""
    store: AsyncStore
    settings: Settings
    backlog: Backlog
    space: ImportSpace
    deployments_json: bytes
    """The body of ``GET /deployments``: the served deployments are fixed when the app is built."""
    closing: bool = False
    """Set when the server shuts down: long polls and log streams end early."""
    stop_server: Callable[[], None] | None = None
    """Stops a standalone server on ``POST /shutdown`` (an embedded one stops with its runner)."""

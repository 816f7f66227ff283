"""What every route of the webserver shares, resolved once when the app is built."""

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


@dataclass(kw_only=True)
class StoreContext:
    """What the run routes need: a client and the store, settings, and lifecycle flags."""

    client: HeadraceClient
    """Reads and cancels runs for the routes that only do what the Python client does."""
    store: AsyncStore
    settings: Settings
    deployments_json: bytes | None = None
    """The body of ``GET /deployments`` when it is fixed (a runner's served deployments);
    None: every deployment of the database, read at each request."""
    closing: bool = False
    """Set when the server shuts down: long polls and log streams end early."""
    stop_server: Callable[[], None] | None = None
    """Stops a standalone server on ``POST /shutdown`` (an embedded one stops with its runner)."""


@dataclass(kw_only=True)
class ServerContext(StoreContext):
    """A runner's webserver: also the runner, its backlog and the import space."""

    runner: Runner
    backlog: Backlog
    space: ImportSpace

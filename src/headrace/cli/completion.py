"""Shell completion of deployment names and recent run ids, read from the store (or the API).

The shell calls these on every Tab, so they are quick (one query each, bounded
by ``COMPLETION_SECONDS``) and never raise or print: whatever goes wrong (no
database yet, a database that does not answer) completes nothing. A SQLite
database that does not exist is not created by pressing Tab.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from headrace.client import HeadraceClient
    from headrace.settings import Settings

T = TypeVar("T")
Items = list[tuple[str, str]]
"""Each completion and the help the shell shows beside it (zsh, fish)."""

COMPLETION_SECONDS = 2.0
RECENT_RUNS = 50


def complete_deployments(incomplete: str) -> Items:
    """``FLOW/DEPLOYMENT`` of each deployment starting with ``incomplete``, with its flow's
    description; a name typed without its flow matches too."""

    async def read(client: HeadraceClient) -> Items:
        items = []
        for deployment in await client.read_deployments():
            label = f"{deployment.flow_name}/{deployment.name}"
            if label.startswith(incomplete) or deployment.name.startswith(incomplete):
                items.append((label, _first_line(deployment.description)))
        return sorted(items)

    return _quietly(read)


def complete_runs(incomplete: str) -> Items:
    """The ids of the newest runs starting with ``incomplete``, with their name and state."""

    async def read(client: HeadraceClient) -> Items:
        runs = await client.read_flow_runs(limit=RECENT_RUNS)
        return [
            (str(run.id), f"{run.name} {run.state.type.value}")
            for run in runs
            if str(run.id).startswith(incomplete)
        ]

    return _quietly(read)


def _quietly(read: Callable[[HeadraceClient], Awaitable[Items]]) -> Items:
    """``read(client)``, or nothing: completion must never fail, hang or print."""
    try:
        with _silent_logging():
            settings = _settings()
            if settings is None:
                return []
            return asyncio.run(_bounded(settings, read))
    except Exception:  # a Tab press must never show a traceback
        return []


async def _bounded(settings: Settings, read: Callable[[HeadraceClient], Awaitable[T]]) -> T:
    from headrace.client import get_client

    async with asyncio.timeout(COMPLETION_SECONDS), get_client(settings) as client:
        return await read(client)


def _settings() -> Settings | None:
    """The settings, with a short database timeout; None when there is no database yet."""
    from headrace.settings import load_settings

    settings = load_settings(database_timeout_seconds=COMPLETION_SECONDS)
    url = settings.resolved_database_url
    if not settings.api_url and url.startswith("sqlite"):
        path = url.partition(":///")[2]
        if path and path != ":memory:" and not Path(path).exists():
            return None
    return settings


@contextlib.contextmanager
def _silent_logging() -> Iterator[None]:
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""

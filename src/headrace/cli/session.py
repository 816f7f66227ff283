"""What every command starts with: settings read once, at this edge, and a client on the store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from headrace.settings import Settings, load_settings

if TYPE_CHECKING:
    from headrace.client import HeadraceClient

T = TypeVar("T")


def command_settings(**overrides: object) -> Settings:
    """The settings, with the options a person gave (``None``: not given) laid over them."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return load_settings(**given)


def with_client(settings: Settings, fn: Callable[[HeadraceClient], Awaitable[T]]) -> T:
    """Run ``fn(client)`` on a fresh event loop."""
    # Lazily: the client loads the store (SQLAlchemy), which `headrace --help` never needs.
    from headrace.client import get_client

    async def main() -> T:
        async with get_client(settings) as client:
            return await fn(client)

    return asyncio.run(main())

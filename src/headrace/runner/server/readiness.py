"""``GET /ready``: whether this runner should be sent work now.

``/health`` says the poll loop is alive; ``/ready`` says more: the database
answers, with the schema this headrace knows, and the runner is not draining.
The database check is one cheap query, bounded by the database timeout and
kept for ``CHECK_SECONDS``, so frequent probes from several balancers cost
little; concurrent probes share one check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from headrace.runner.streaks import FailureStreak

if TYPE_CHECKING:
    from headrace.runner.server.context import ServerContext

logger = logging.getLogger(__name__)

CHECK_SECONDS = 1.0
NOT_DRAINING = "The runner is stopping"
SCHEMA_BEHIND = "The database schema is not the one this headrace uses"
UNREACHABLE = "The database cannot be reached"


class Readiness:
    """The last database check and when it was made; ``problem()`` is None when ready."""

    def __init__(self, ctx: ServerContext) -> None:
        self._ctx = ctx
        self._checked_at = -float("inf")
        self._database: str | None = None
        self._check: asyncio.Future[str | None] | None = None
        self._failing = FailureStreak(logger, "GET /ready's database check", meanwhile="not ready")

    async def problem(self) -> str | None:
        """Why the runner is not ready, or None."""
        ctx = self._ctx
        if ctx.closing or ctx.runner.draining:
            return NOT_DRAINING
        if time.monotonic() - self._checked_at < CHECK_SECONDS:
            return self._database
        if self._check is None or self._check.done():
            self._check = asyncio.ensure_future(self._check_database())
        return await asyncio.shield(self._check)

    async def _check_database(self) -> str | None:
        try:
            current = await self._ctx.store.schema_is_current()
        except Exception as exc:  # a closed store, say: not ready, and never a 500
            self._failing.failed(exc)
            problem: str | None = UNREACHABLE
        else:
            self._failing.succeeded()
            problem = None if current else SCHEMA_BEHIND
        self._database, self._checked_at = problem, time.monotonic()
        return problem

"""A failure streak: what a loop that keeps failing logs, so a database outage stays readable.

A loop that retries every fraction of a second (the poll, the heartbeat, the
log writer, the outcome writer) would write a traceback per attempt while the
database is down: hundreds of lines a second, burying whatever else happened.
A streak logs its first failure with the traceback, then at most one "still
failing (n times)" line every ``remind_seconds``, and one line when it recovers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REMIND_SECONDS = 60.0
"""A minute: a person watching the log is reminded; an outage of hours stays a few pages."""


class FailureStreak:
    """The consecutive failures of one thing (``what``), told to ``logger`` in few lines.

    ``meanwhile`` ends the first line: what happens until it recovers.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        meanwhile: str = "retrying",
        remind_seconds: float = REMIND_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self.what = what
        self.meanwhile = meanwhile
        self.remind_seconds = remind_seconds
        self._clock = clock
        self.failures = 0
        self._began = 0.0
        self._told_at = 0.0

    def failed(self, exc: BaseException, extra: dict[str, object] | None = None) -> bool:
        """Count a failure; log it if it starts the streak or a reminder is due.

        Returns whether this failure was logged.
        """
        now = self._clock()
        self.failures += 1
        if self.failures == 1:
            self._began = self._told_at = now
            self._logger.error(
                "%s failed; %s", self.what, self.meanwhile, exc_info=exc, extra=extra
            )
            return True
        if now - self._told_at < self.remind_seconds:
            return False
        self._told_at = now
        self._logger.warning(
            "%s still failing (%d times in %.0fs): %s",
            self.what,
            self.failures,
            now - self._began,
            _one_line(exc),
            extra=extra,
        )
        return True

    def succeeded(self) -> None:
        """End the streak; say so once if there was one."""
        if not self.failures:
            return
        failures, self.failures = self.failures, 0
        self._logger.warning(
            "%s recovered after %d failures in %.0fs",
            self.what,
            failures,
            self._clock() - self._began,
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

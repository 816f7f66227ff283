"""The heartbeat as a lease: a runner runs its runs only while others would not take them over.

A runner's heartbeat stamps the time it was sent; runners on other hosts take the
runs of one silent for the heartbeat timeout plus the lease margin. The runner
itself gives them up well before: a third of the timeout before the lease
expires it kills their processes (within a sixth of the timeout at most), claims
nothing and records none of their outcomes, until a heartbeat is stored again.
So two attempts of a run never execute at once while the hosts' clocks agree
within the margin. Times here are ``time.monotonic()``: a changed wall clock
does not lengthen the lease, and a paused process finds it lapsed on resuming.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

STOP_BEFORE_EXPIRY = 1 / 3
"""The share of the heartbeat timeout left when a runner that cannot renew stops its runs."""
KILL_WITHIN = 1 / 6
"""The share of the timeout a run's process gets to end once the lease is lost: it is gone
before the lease expires even for the runner's own clock."""


@dataclass
class Lease:
    """What a runner holds while its last stored heartbeat is recent enough."""

    timeout_seconds: float
    renewed_at: float | None = None
    """When the last heartbeat that was stored was sent (monotonic); None: none yet."""

    @property
    def holds_for(self) -> float:
        """Seconds from a heartbeat being sent to the runner giving up its runs."""
        return self.timeout_seconds - self.timeout_seconds * STOP_BEFORE_EXPIRY

    def renew(self, sent: float, now: float | None = None) -> bool:
        """A heartbeat sent at ``sent`` was stored (``now``); whether the lease had lapsed."""
        lapsed = not self.held(now)
        if self.renewed_at is None or sent > self.renewed_at:
            self.renewed_at = sent
        return lapsed

    def lapses_at(self) -> float | None:
        return None if self.renewed_at is None else self.renewed_at + self.holds_for

    def held(self, now: float | None = None) -> bool:
        """Whether the runner may run, claim and record runs now."""
        lapses = self.lapses_at()
        return lapses is not None and (time.monotonic() if now is None else now) < lapses

    def kill_grace(self, kill_grace_seconds: float) -> float:
        """How long a run's process may take to end after a SIGTERM once the lease is lost."""
        return min(kill_grace_seconds, self.timeout_seconds * KILL_WITHIN)

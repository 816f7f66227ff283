"""Writing a run's outcome: retried until the store takes it, and never over a later attempt.

While the database is away, a run keeps its slot (so what waits is bounded by
the runner's limit) and stays this runner's: recovery does not take it for
lost. A stopping runner, a lapsed lease (another runner may take the run over)
or an error that is not an outage gives up: recovery then resolves the run,
from the journal if its process recorded its end there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from headrace.exceptions import InvalidStateTransition, ObjectNotFound, StoreError, StoreUnavailable
from headrace.flow_runs import FlowRun
from headrace.runner.outcomes import Decision
from headrace.runner.streaks import FailureStreak
from headrace.states import ACTIVE_STATES, State, StateType
from headrace.store import AsyncStore
from headrace.store.records import Attempt

logger = logging.getLogger(__name__)

PERSIST_ATTEMPTS = 5
"""Tries to store an outcome the database refuses (an outage is waited out while the lease
holds)."""
PERSIST_RETRY_SECONDS = 0.5
PERSIST_RETRY_MAX_SECONDS = 5.0
"""An outcome the database did not take is retried this often at most, for as long as it takes."""


class OutcomeWriter:
    """Stores outcomes for an executor; counts the ones that wait for the database."""

    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self.waiting = 0
        """Runs that ended and whose outcome the database has not taken yet."""
        self._giving_up = asyncio.Event()
        self._failing = FailureStreak(
            logger, "Recording the end of runs", meanwhile="each is retried, keeping its slot"
        )
        self.timed_write: Callable[[float], None] | None = None
        """Told how long each outcome took to write, when the runner keeps metrics."""

    async def write(
        self,
        run: FlowRun,
        decision: Decision,
        lease_lost: Callable[[], bool],
        on_written: Callable[[FlowRun], None] | None = None,
    ) -> FlowRun | None:
        """Record the outcome of this attempt; retried until the store takes it.

        While the database is away, the run keeps its slot (so what waits is
        bounded by the runner's limit) and stays this runner's: recovery does not
        take it for lost. A stopping runner, a lapsed lease (another runner may
        take the run over) or an error that is not an outage gives up: recovery
        then resolves the run, from the journal if the child recorded its end there.
        ``on_written`` hears of the run as stored only when this write stored it.
        """
        failures = 0
        try:
            while not self._lease_lost_for(run, lease_lost):
                try:
                    final = await self._timed_outcome(run, decision, on_written)
                    self._failing.succeeded()
                    break
                except StoreError as exc:
                    failures += 1
                    if failures == 1:
                        self.waiting += 1
                    if not self._keep_trying(run, exc, failures):
                        return None
                    await self._sleep_unless_giving_up(_retry_delay(failures))
            else:
                return None
        finally:
            if failures:
                self.waiting -= 1
        if failures:
            logger.info("Recorded the end of %s once the database took it", run.name)
        return final

    def _lease_lost_for(self, run: FlowRun, lease_lost: Callable[[], bool]) -> bool:
        if not lease_lost():
            return False
        logger.warning(
            "Not recording the end of %s: this runner lost its lease, so another may run it "
            "again (recovery resolves it, from the journal if its process recorded its end)",
            run.name,
        )
        return True

    def _keep_trying(self, run: FlowRun, exc: StoreError, failures: int) -> bool:
        outage = isinstance(exc, StoreUnavailable)
        if self._giving_up.is_set() or (not outage and failures >= PERSIST_ATTEMPTS):
            logger.error("Gave up recording the end of %s: %s", run.name, exc)
            return False
        self._failing.failed(exc, {"flow_run_id": str(run.id), "flow_run_name": run.name})
        if failures == 1:  # once per run: what waits is bounded by the runner's limit
            logger.warning(
                "Could not record the end of %s (%d outcomes wait for the database): %s",
                run.name,
                self.waiting,
                exc,
            )
        return True

    async def _timed_outcome(
        self, run: FlowRun, decision: Decision, on_written: Callable[[FlowRun], None] | None
    ) -> FlowRun | None:
        began = time.monotonic()
        final = await self._store_outcome(run, decision, on_written or _ignore)
        if self.timed_write is not None:
            self.timed_write(time.monotonic() - began)
        return final

    async def _store_outcome(
        self, run: FlowRun, decision: Decision, on_written: Callable[[FlowRun], None]
    ) -> FlowRun | None:
        try:
            final = await self._store.set_state(
                run.id,
                decision.state,
                expected=ACTIVE_STATES,
                attempt=attempt_of(run),
                **decision.fields,
            )
        except InvalidStateTransition:
            return await self._persist_conflict(run, decision, on_written)
        except ObjectNotFound:
            return None
        on_written(final)
        return final

    def give_up(self) -> None:
        """Stop retrying outcomes the database did not take (the runner is stopping)."""
        self._giving_up.set()

    async def _sleep_unless_giving_up(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._giving_up.wait(), seconds)

    async def _persist_conflict(
        self, run: FlowRun, decision: Decision, on_written: Callable[[FlowRun], None]
    ) -> FlowRun | None:
        current = await self._store.read_flow_run(run.id)
        attempt = attempt_of(run)
        if attempt is not None and (current.runner_id, current.run_count) != attempt:
            logger.warning(
                "Flow run %s was taken over (it is attempt %d now); not recording attempt %d",
                run.name,
                current.run_count,
                attempt.run_count,
            )
            return current
        if current.state.type == StateType.CANCELLING:
            # Cancelled while it ended: a retry or requeue must not outlive the cancel.
            cancelled = State(type=StateType.CANCELLED, message="Cancelled by request")
            with contextlib.suppress(InvalidStateTransition):
                final = await self._store.set_state(
                    run.id, cancelled, expected=[current.state.type], attempt=attempt
                )
                on_written(final)
                return final
        logger.warning(
            "Flow run %s is already %s; not recording %s",
            run.name,
            current.state.type.value,
            decision.state.type.value,
        )
        return current


def _ignore(run: FlowRun) -> None:
    pass


def attempt_of(run: FlowRun) -> Attempt | None:
    """The claim this runner is executing: its writes must not land on a later one."""
    return None if run.runner_id is None else Attempt(run.runner_id, run.run_count)


def _retry_delay(failures: int) -> float:
    return min(PERSIST_RETRY_SECONDS * 2.0 ** (failures - 1), PERSIST_RETRY_MAX_SECONDS)

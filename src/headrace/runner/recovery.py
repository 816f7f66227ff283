"""Crash recovery: resolve runs left PENDING, RUNNING or CANCELLING by a runner that died,
and ad-hoc runs still queued for a runner that is gone."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import FlowRun
from headrace.process.protocol import FinalEvent
from headrace.runner.journal import ForeignJournal, Journal, foreign_journals
from headrace.runner.outcomes import Decision, ProcessReport, decide_orphan, decide_outcome
from headrace.states import ACTIVE_STATES, State, StateType, utcnow
from headrace.store import AsyncStore, RunnerRecord
from headrace.store.records import Attempt

Ended = Callable[[FlowRun, FinalEvent | None], None]
"""Told of a run whose final state recovery wrote, with what its process journaled."""

logger = logging.getLogger(__name__)


def pid_alive(pid: int, started: datetime | None = None) -> bool:
    """Whether the process ``pid`` on this host exists and is not a newer one reusing
    the pid of a process ``started`` then (a dead runner must never look alive).

    A zombie is dead: a runner killed under a parent that has not waited for it yet
    (a supervisor, a container's first process that reaps nothing) keeps its pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if _zombie(pid):
        return False
    if started is None:
        return True
    began = process_start(pid)
    return began is None or began <= started + PID_START_TOLERANCE


PID_START_TOLERANCE = timedelta(seconds=5)
"""A runner records its start a moment after its process starts; allow for clock ticks too."""


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc, or it ended just now: the start time check decides
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def process_start(pid: int) -> datetime | None:
    """When process ``pid`` started, from /proc (None where there is no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        ticks = int(stat.rpartition(")")[2].split()[19])  # field 22: starttime
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"), UTC)


def why_dead(
    owner: RunnerRecord | None,
    me: RunnerRecord,
    *,
    now: datetime,
    heartbeat_timeout: timedelta,
    is_alive: Callable[[int, datetime], bool] = pid_alive,
    queued: bool = False,
    lease_margin: timedelta = timedelta(0),
) -> str | None:
    """Why ``owner`` can no longer finish its runs (or, ``queued``, start the runs sent to
    it), or None if it may still be alive.

    A runner on another host is dead once its lease expired with a margin: silent for
    ``heartbeat_timeout`` plus ``lease_margin`` by this runner's clock. It stopped its
    runs before then (``lease.py``), so a new attempt never overlaps an old one while
    the two hosts' clocks agree within the margin.
    """
    if owner is None:
        return "its runner is unknown"
    if owner.id == me.id:
        return None
    where = f"runner {owner.name!r} (pid {owner.pid} on {owner.host})"
    if queued:
        where = f"it was sent to {where}, which"
    if owner.stopped is not None:
        return f"{where} stopped" + ("" if queued else " without finishing it")
    if owner.host == me.host:
        if owner.pid == me.pid or not is_alive(owner.pid, owner.started):
            return f"{where} died" + ("" if queued else " while it ran")
        # Alive but silent (stopped, or its loop starved): its runs' processes may still
        # be running, so taking them over could run a run twice. Only another host,
        # which cannot look, goes by heartbeats.
        return None
    if not owner.presumed_alive(now, heartbeat_timeout + lease_margin):
        return f"{where} stopped sending heartbeats"
    return None


async def recover_orphans(
    store: AsyncStore,
    me: RunnerRecord,
    deployment_ids: Collection[UUID],
    *,
    heartbeat_timeout: timedelta,
    active: Callable[[], Collection[UUID]] = frozenset,
    journal: Journal | None = None,
    lease_margin: timedelta = timedelta(0),
    on_ended: Ended | None = None,
) -> int:
    """Resolve every orphaned run of these deployments, or of no deployment, at once.

    Orphans are runs of dead runners, and runs this runner claimed but no longer
    executes (``active()`` lists the ones it does): their end went unrecorded.
    Any runner resolves the ad-hoc runs of a dead one: no other serves them.
    An orphan whose process recorded its end in the journal on this host gets
    that outcome; the others are retried or crashed.
    """
    now = utcnow()
    resolved = 0
    recorded = None if journal is None else journal.reader()
    for run, owner in await store.read_active_runs(deployment_ids, ad_hoc=True):
        if is_subflow_run(run):
            if run.parent_flow_run_id in active():
                continue  # its parent's process runs it, and its runner records it
            run = run.model_copy(update={"max_retries": 0})  # never run again on its own
        why = why_dead(
            owner, me, now=now, heartbeat_timeout=heartbeat_timeout, lease_margin=lease_margin
        )
        if why is None and owner is not None and owner.id == me.id and run.id not in active():
            why = "its outcome could not be recorded when its process ended"
        if why is None:
            continue
        event = None if recorded is None or owner is None else recorded.recorded(owner.id, run)
        if event is None:
            decision = decide_orphan(run, why, now)
        else:
            decision = decide_outcome(run, ProcessReport(0, event), now)
        try:
            final = await store.set_state(
                run.id, decision.state, expected=[run.state.type], **decision.fields
            )
        except InvalidStateTransition:
            continue  # someone else resolved it first
        _tell_ended(on_ended, final, event)
        logger.warning("Flow run %s: %s", run.name, _told(decision, event is not None, why))
        resolved += 1
    return resolved


async def recover_addressed_runs(
    store: AsyncStore,
    me: RunnerRecord,
    can_load: Callable[[str | None], bool],
    *,
    heartbeat_timeout: timedelta,
    lease_margin: timedelta = timedelta(0),
    on_ended: Ended | None = None,
) -> int:
    """Ad-hoc runs queued for a runner that is gone: this runner takes those it
    ``can_load``; the others end CRASHED, so none waits for ever."""
    now = utcnow()
    resolved = 0
    for run, owner in await store.read_addressed_runs(me.id):
        why = why_dead(
            owner,
            me,
            now=now,
            heartbeat_timeout=heartbeat_timeout,
            queued=True,
            lease_margin=lease_margin,
        )
        if why is None or run.runner_id is None:
            continue
        if can_load(run.entrypoint):
            if await store.readdress_flow_run(run.id, run.runner_id, me):
                logger.warning("Flow run %s: %s; running it here instead", run.name, why)
                resolved += 1
            continue
        message = f"Crashed before it started: {why}; no live runner serves its flow"
        try:
            final = await store.set_state(
                run.id,
                State(type=StateType.CRASHED, message=message),
                expected=[StateType.SCHEDULED],
                attempt=Attempt(run.runner_id, run.run_count),
            )
        except InvalidStateTransition:
            continue  # claimed, sent elsewhere or ended meanwhile
        _tell_ended(on_ended, final, None)
        logger.warning("Flow run %s: %s", run.name, message)
        resolved += 1
    return resolved


def _tell_ended(on_ended: Ended | None, final: FlowRun, event: FinalEvent | None) -> None:
    """This runner wrote a run's final state: its hooks and webhooks follow here."""
    if on_ended is None or not final.state.type.is_terminal:
        return
    try:
        on_ended(final, event)
    except Exception:
        logger.exception("Could not follow up the end of flow run %s", final.name)


def is_subflow_run(run: FlowRun) -> bool:
    """A run its parent's process executes (a subflow): no runner claims it by itself."""
    return run.parent_flow_run_id is not None and run.deployment_id is None


def _told(decision: Decision, replayed: bool, why: str) -> str:
    state = decision.state
    if replayed:
        return f"{state.type.value} as its process recorded before it ended ({why})"
    return state.message or state.type.value


async def sweep_journals(store: AsyncStore, journal: Journal) -> int:
    """Delete the journals dead runners left on this host once no outcome in them is needed."""
    removed = 0
    for foreign in foreign_journals(journal):
        if foreign.pid is None or pid_alive(foreign.pid, foreign.started):
            continue  # alive, or not yet known: its runs may still append
        if not await _still_needed(store, foreign):
            foreign.remove()
            removed += 1
    return removed


async def _still_needed(store: AsyncStore, foreign: ForeignJournal) -> bool:
    """Whether an outcome it recorded belongs to an attempt nobody has resolved yet."""
    owner = foreign.directory.name
    for run_id, count in foreign.attempts():
        try:
            run = await store.read_flow_run(run_id)
        except ObjectNotFound:
            continue
        mine = str(run.runner_id) == owner and run.run_count == count
        if mine and run.state.type in ACTIVE_STATES:
            return True
    return False

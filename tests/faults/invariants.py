"""What "nothing accepted is lost" means, checked on what a fault left behind.

Every check reads evidence a user could collect: the runs and their state
history in the store, the marker lines the bodies wrote (``tests/faults/flows.py``),
and the time each request took. Each returns nothing and raises an
``AssertionError`` naming the run or request that broke it.
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from headrace.states import TERMINAL_STATES, StateType

TERMINAL = {state.value for state in TERMINAL_STATES}


@dataclass(frozen=True)
class Marker:
    """One line a body wrote: ``start``, ``tick`` or ``end`` of attempt ``attempt`` of ``run``
    of ``flow``."""

    kind: str
    run: str
    attempt: int
    pid: int
    at: float
    flow: str


@dataclass(frozen=True)
class Request:
    """One HTTP request the test sent: its status (None: no answer) and how long it took."""

    route: str
    status: int | None
    seconds: float
    run_id: str | None = None


@dataclass(frozen=True)
class StoredRun:
    """A run as the store has it at the end: its state, attempts and state history."""

    id: str
    flow_name: str
    state: str
    run_count: int
    history: tuple[str, ...]


def read_markers(path: Path) -> list[Marker]:
    """Every whole marker line (a body killed mid-write may leave a torn last line)."""
    if not path.exists():
        return []
    markers = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            kind, run, attempt, pid, at, flow = line.split()
            markers.append(Marker(kind, run, int(attempt), int(pid), float(at), flow))
    return markers


def read_runs(database_url: str) -> dict[str, StoredRun]:
    """Every run in the store, with its whole state history, in the order it was written."""
    url = sa.make_url(database_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            runs = conn.execute(
                sa.text("SELECT id, flow_name, state_type, run_count FROM flow_runs")
            ).all()
            states = conn.execute(
                sa.text("SELECT flow_run_id, type FROM flow_run_states ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    history: dict[str, list[str]] = defaultdict(list)
    for run_id, state_type in states:
        history[_key(run_id)].append(str(state_type))
    return {
        _key(run_id): StoredRun(
            _key(run_id), flow_name, str(state), int(count), tuple(history[_key(run_id)])
        )
        for run_id, flow_name, state, count in runs
    }


def _key(run_id: object) -> str:
    """A run id as the bodies write it: SQLite keeps hex, PostgreSQL a UUID."""
    text = str(run_id).replace("-", "")
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def unfinished(runs: Mapping[str, StoredRun]) -> list[str]:
    return [run.id for run in runs.values() if run.state not in TERMINAL]


def assert_every_accepted_run_is_stored(
    requests: Iterable[Request], runs: Mapping[str, StoredRun]
) -> None:
    """A 201 is a promise: the run it named exists."""
    missing = [r.run_id for r in requests if r.status == 201 and r.run_id not in runs]
    assert not missing, f"accepted runs missing from the store: {missing}"


def assert_exactly_one_terminal_state(runs: Mapping[str, StoredRun]) -> None:
    """Each run ended, once: one terminal row in its history, and it is the last."""
    for run in runs.values():
        ends = [state for state in run.history if state in TERMINAL]
        assert len(ends) == 1, f"run {run.id} has {len(ends)} terminal states: {run.history}"
        assert run.history[-1] == run.state == ends[0], f"run {run.id}: {run.history}"


def assert_no_finished_body_ran_again(markers: Sequence[Marker]) -> None:
    """Once a body recorded its end, no attempt of that run starts again on this host.

    The end line is written a moment before the run's process journals its outcome: a
    kill landing in between is the at-least-once window the README names, and shows here.
    """
    ended: dict[str, float] = {}
    for marker in markers:
        if marker.kind == "end":
            ended[marker.run] = min(ended.get(marker.run, marker.at), marker.at)
    again = [
        (m.run, m.attempt) for m in markers if m.kind == "start" and m.at > ended.get(m.run, m.at)
    ]
    assert not again, f"bodies that had finished started again (run, attempt): {again}"


def assert_no_overlapping_attempts(markers: Sequence[Marker]) -> None:
    """Two attempts (processes) of one run never executed at the same time."""
    spans: dict[tuple[str, int], list[float]] = defaultdict(list)
    for marker in markers:
        spans[(marker.run, marker.pid)].append(marker.at)
    by_run: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for (run, _), times in spans.items():
        by_run[run].append((min(times), max(times)))
    for run, intervals in by_run.items():
        intervals.sort()
        for (_, last), (first, _) in itertools.pairwise(intervals):
            assert first > last, f"two attempts of run {run} executed at once: {intervals}"


def assert_finished_bodies_kept_their_outcome(
    markers: Sequence[Marker], runs: Mapping[str, StoredRun]
) -> None:
    """A run whose body finished is COMPLETED: its outcome was not lost on the way."""
    finished = {marker.run for marker in markers if marker.kind == "end"}
    lost = [
        (run_id, runs[run_id].state)
        for run_id in finished
        if run_id in runs and runs[run_id].state != StateType.COMPLETED.value
    ]
    assert not lost, f"runs whose body finished but did not end COMPLETED: {lost}"


def assert_within(requests: Iterable[Request], bound: float) -> None:
    """No request took longer than its bound, answered or not."""
    slow = [(r.route, r.status, round(r.seconds, 2)) for r in requests if r.seconds > bound]
    assert not slow, f"requests slower than {bound} s: {slow}"


def assert_nothing_lost(
    requests: Sequence[Request], runs: Mapping[str, StoredRun], markers: Sequence[Marker]
) -> None:
    """The four promises together, for a run of a scenario that has ended."""
    assert_every_accepted_run_is_stored(requests, runs)
    assert not unfinished(runs), f"runs that never ended: {unfinished(runs)}"
    assert_exactly_one_terminal_state(runs)
    assert_no_finished_body_ran_again(markers)
    assert_no_overlapping_attempts(markers)
    assert_finished_bodies_kept_their_outcome(markers, runs)

"""The fault tier's shared parts: a real ``headrace serve``, a trigger load, and the verdict.

Each scenario starts ``headrace serve tests/faults/flows.py:marked`` in a process
of its own (short heartbeat and poll settings, so takeover is quick), fires
triggers at it over HTTP while it does something bad to it, lets the condition
clear, waits for every run in the store to end, and checks ``invariants``.
Each prints one summary line (``pytest -s``), also appended to the file named by
``FAULTS_SUMMARY`` when it is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.faults.invariants import (
    TERMINAL,
    Marker,
    Request,
    StoredRun,
    read_markers,
    read_runs,
    unfinished,
)
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
FLOWS = REPO / "tests" / "faults" / "flows.py"

HEARTBEAT_TIMEOUT_SECONDS = 3.0
DATABASE_TIMEOUT_SECONDS = 2.0
TRIGGER_BOUND_SECONDS = 2 * DATABASE_TIMEOUT_SECONDS + 2.0
"""A trigger waits for the database at most twice its timeout (a backlog count, then the
insert); the rest is a busy 2-core host."""
STARTUP_SECONDS = 60.0
SETTLE_SECONDS = 45.0
"""How long every run may take to end once the fault has cleared."""

TUNING = {
    "HEADRACE_RUNNER_POLL_FREQUENCY": "0.2",
    "HEADRACE_RUNNER_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_TIMEOUT_SECONDS),
    "HEADRACE_RUNNER_LEASE_MARGIN_SECONDS": "0.5",
    "HEADRACE_DATABASE_TIMEOUT_SECONDS": str(DATABASE_TIMEOUT_SECONDS),
    "HEADRACE_RUNNER_SHUTDOWN_GRACE_SECONDS": "1",
}


@dataclass
class Served:
    """One ``headrace serve`` process, and where to reach it."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path
    deployment_id: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Scene:
    """Where one scenario keeps its runner's home, database and marker file."""

    work: Path
    database_url: str
    port: int = field(default_factory=free_port)
    limit: int = 4
    served_database_url: str | None = None
    """Where the runner reaches the store, when not at ``database_url`` (through a proxy)."""

    @property
    def store_kind(self) -> str:
        return self.database_url.partition(":")[0].partition("+")[0]

    @property
    def home(self) -> Path:
        return self.work / "home"

    @property
    def markers_file(self) -> Path:
        return self.work / "markers"

    def markers(self) -> list[Marker]:
        return read_markers(self.markers_file)

    def environment(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
        env.update(
            PYTHONPATH=str(REPO),
            HEADRACE_HOME=str(self.home),
            HEADRACE_DATABASE_URL=self.served_database_url or self.database_url,
            **TUNING,
            **extra,
        )
        return env


def start_serving(
    scene: Scene,
    name: str = "serve",
    extra_env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Served:
    """``headrace serve`` of the marked flows, healthy and answering, or an error with its log."""
    log = scene.work / f"{name}.log"
    command = [sys.executable, "-m", "headrace", "serve", f"{FLOWS}:marked", "--name", "faults"]
    command += ["--host", "127.0.0.1", "--port", str(scene.port), "--limit", str(scene.limit)]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=scene.environment(extra_env or {}),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    served = Served(process, scene.port, log)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        assert process.poll() is None, served.output()
        assert time.monotonic() < deadline, f"serve did not become healthy: {served.output()}"
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{served.url}/health", timeout=2).status_code == 200:
                (deployment,) = httpx.get(f"{served.url}/deployments", timeout=5).json()
                served.deployment_id = deployment["id"]
                return served
        time.sleep(0.05)


def end(served: Served) -> None:
    """Kill what is left of a serve process and of all it started in its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(served.pid, signal.SIGKILL)
    served.process.wait(timeout=30)


@contextlib.contextmanager
def ended_at_exit() -> Iterator[list[Served]]:
    """Serve processes a scenario started: whatever is left of them goes at the end."""
    started: list[Served] = []
    try:
        yield started
    finally:
        for served in started:
            end(served)


class Load:
    """Triggers of both marked flows, alternating; every request and its time is kept."""

    def __init__(self, scene: Scene, served: Served, seconds: float = 0.3) -> None:
        self.scene = scene
        self.served = served
        self.seconds = seconds
        self.requests: list[Request] = []
        self._kinds = itertools.cycle([False, True])
        self._client = httpx.AsyncClient(timeout=TRIGGER_BOUND_SECONDS * 3)

    async def close(self) -> None:
        await self._client.aclose()

    async def trigger(self, retried: bool | None = None) -> Request:
        retried = next(self._kinds) if retried is None else retried
        params = {"out": str(self.scene.markers_file), "seconds": self.seconds}
        if retried:
            route = "/flow/run"
            body: dict[str, object] = {
                "entrypoint": f"{FLOWS}:marked_retried",
                "parameters": params,
            }
        else:
            route, body = f"/deployment/{self.served.deployment_id}/run", params
        began = time.monotonic()
        try:
            answer = await self._client.post(f"{self.served.url}{route}", json=body)
        except httpx.TransportError:
            request = Request(route, None, time.monotonic() - began)
        else:
            request = Request(route, answer.status_code, time.monotonic() - began, _run_id(answer))
        self.requests.append(request)
        return request

    async def fire(self, count: int, concurrency: int = 6, over: float = 0.0) -> list[Request]:
        """``count`` triggers, ``concurrency`` at a time, spread ``over`` seconds."""
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> Request:
            await asyncio.sleep(over * i / count)
            async with gate:
                return await self.trigger()

        return list(await asyncio.gather(*(one(i) for i in range(count))))

    def accepted(self) -> list[Request]:
        return [request for request in self.requests if request.status == 201]


def _run_id(answer: httpx.Response) -> str | None:
    if answer.status_code != 201:
        return None
    body = answer.json()
    return str(body.get("flow_run_id") or body["id"])


async def wait_for(
    probe: Callable[[], object], what: str, timeout: float = STARTUP_SECONDS
) -> float:
    """Seconds until ``probe()`` (run in a thread) is truthy; an error naming ``what`` after."""
    began = time.monotonic()
    while not await asyncio.to_thread(probe):
        assert time.monotonic() - began < timeout, f"timed out after {timeout} s: {what}"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


def bodies_ended(scene: Scene, at_least: int) -> Callable[[], bool]:
    return lambda: sum(m.kind == "end" for m in scene.markers()) >= at_least


def bodies_running(scene: Scene, at_least: int, of_each_flow: bool = False) -> Callable[[], bool]:
    """Whether ``at_least`` bodies have started and not ended (``of_each_flow``: of both
    marked flows, with retries and without): what a fault now catches."""

    def check() -> bool:
        markers = scene.markers()
        ended = {(m.run, m.pid) for m in markers if m.kind == "end"}
        running = [m for m in markers if m.kind == "start" and (m.run, m.pid) not in ended]
        if of_each_flow and len({m.flow for m in running}) < 2:
            return False
        return len(running) >= at_least

    return check


def bodies_started(scene: Scene, at_least: int) -> Callable[[], bool]:
    return lambda: sum(m.kind == "start" for m in scene.markers()) >= at_least


async def settle(
    scene: Scene, timeout: float = SETTLE_SECONDS
) -> tuple[dict[str, StoredRun], float]:
    """Every run in the store, once none is left unfinished, and how long that took."""
    runs: dict[str, StoredRun] = {}

    def all_ended() -> bool:
        nonlocal runs
        with contextlib.suppress(Exception):  # a store still coming back
            runs = read_runs(scene.database_url)
            return bool(runs) and not unfinished(runs)
        return False

    try:
        waited = await wait_for(all_ended, "every run to end", timeout)
    except AssertionError:
        left = [(run.id, run.flow_name, run.history) for run in runs.values()]
        raise AssertionError(
            f"runs that did not end: {[r for r in left if r[2][-1:] and r[2][-1] not in TERMINAL]}"
        ) from None
    return runs, waited


def summary(
    scenario: str,
    requests: Sequence[Request],
    runs: Mapping[str, StoredRun],
    **figures: float | int | str,
) -> str:
    """One line of what the scenario measured; printed, and kept in ``$FAULTS_SUMMARY``."""
    states = Counter(run.state for run in runs.values())
    accepted = [r for r in requests if r.status == 201]
    lost = sum(r.run_id not in runs or runs[r.run_id].state not in TERMINAL for r in accepted)
    duplicates = sum(max(0, sum(s in TERMINAL for s in run.history) - 1) for run in runs.values())
    answered = [r.seconds for r in requests if r.status is not None]
    parts = {
        "accepted": len(accepted),
        "runs": len(runs),
        **{state.lower(): count for state, count in sorted(states.items())},
        "attempts": sum(run.run_count for run in runs.values()),
        "lost": lost,
        "duplicate_terminal": duplicates,
        "slowest_answer_s": round(max(answered, default=0.0), 2),
        **{k: round(v, 2) if isinstance(v, float) else v for k, v in figures.items()},
    }
    line = f"faults {scenario}: " + " ".join(f"{k}={v}" for k, v in parts.items())
    print(line)
    if target := os.environ.get("FAULTS_SUMMARY"):
        with open(target, "a") as handle:
            handle.write(line + "\n")
    return line


def active_runs(scene: Scene) -> dict[str, tuple[str, int]]:
    """The runs started and not ended, with their state and attempt: what a fault orphans."""
    runs = read_runs(scene.database_url)
    return {
        run.id: (run.state, run.run_count)
        for run in runs.values()
        if run.state in {"PENDING", "RUNNING", "CANCELLING"}
    }


def moved_on(scene: Scene, orphans: Mapping[str, tuple[str, int]]) -> Callable[[], bool]:
    """Whether every orphan has left the state and attempt it was caught in."""

    def check() -> bool:
        runs = read_runs(scene.database_url)
        return all((runs[i].state, runs[i].run_count) != seen for i, seen in orphans.items())

    return check


def in_flight_at(markers: Sequence[Marker], at: float) -> set[str]:
    """Runs one of whose bodies had started and not yet written its last marker at ``at``."""
    spans: dict[tuple[str, int], list[float]] = {}
    for marker in markers:
        spans.setdefault((marker.run, marker.pid), []).append(marker.at)
    return {run for (run, _), times in spans.items() if min(times) < at < max(times)}


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in text.split()]
    return []


def fork_server_of(runner_pid: int) -> int | None:
    """The runner's child titled ``headrace forkserver``, if it has one now."""
    for child in children(runner_pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"headrace forkserver"):
                return child
    return None

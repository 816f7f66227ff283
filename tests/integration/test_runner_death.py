"""No run outlives its runner, and a dead fork server costs a run an attempt, not its end."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from headrace.client import get_client
from headrace.flow_runs import NewFlowRun
from headrace.process.protocol import ChildJob
from headrace.process.starter import ChildProcess, ForkServerStarter
from headrace.runner.liveness import CANCEL_CHECK_SECONDS, recovery_seconds
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord
from tests.flows import basic, extra
from tests.helpers import eventually, make_runner, process_alive, running, wait_for_state
from tests.integration.test_outcome_durability import markers, runner_process, trigger_touch
from tests.integration.test_runner import fork_servers

pytestmark = pytest.mark.timeout(120)

GONE_WITHIN_SECONDS = 2.0
"""How soon a run, and all it started, must be gone once its runner is."""
LAST_CHECK_SLACK_SECONDS = 0.25
"""How long a loaded machine may keep a run between its last check and its body."""
LOADED_SLACK_SECONDS = 5.0
"""What a loaded 2-core machine may add to a takeover's documented bound (still far under
the poll that would otherwise find the run)."""


def run_processes(runner_pid: int) -> list[int]:
    """The processes the runner's fork servers forked: its runs."""
    runs = []
    for server in _children(runner_pid):
        runs.extend(_children(server))
    return runs


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


async def all_dead(pids: list[int]) -> list[int]:
    return [pid for pid in pids if await process_alive(pid)]


async def test_a_killed_runner_takes_its_runs_and_what_they_started_with_it(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    pidfiles = [tmp_path / f"pids{i}" for i in range(2)]
    with runner_process(database_url, settings.home, limit=2) as process:
        async with get_client(settings) as client:
            deployment = await client.read_deployment_by_name("with-grandchild", "grandchild")
            for pidfile in pidfiles:
                await client.create_flow_run_from_deployment(
                    deployment.id, {"pidfile": str(pidfile)}
                )
        await eventually(
            lambda: asyncio.to_thread(lambda: all(p.exists() and p.read_text() for p in pidfiles)),
            bool,
            what="the runs to start their grandchildren",
        )
        pids = [int(pid) for pidfile in pidfiles for pid in pidfile.read_text().split()]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    await eventually(
        lambda: all_dead(pids),
        lambda alive: not alive,
        timeout=GONE_WITHIN_SECONDS,
        what="the runs and their grandchildren to die with their runner",
    )


async def test_no_body_starts_or_runs_on_once_its_runner_is_dead(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "markers"
    with runner_process(database_url, settings.home, limit=6) as process:
        await trigger_touch(settings, out, 60, sleep=0.05)
        # Killed while it starts runs as fast as it can.
        await eventually(
            lambda: asyncio.to_thread(markers, out, "end"),
            lambda ended: len(ended) >= 6,
            timeout=30,
        )
        runs = run_processes(process.pid)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        dead = time.time()
    await eventually(
        lambda: all_dead(runs),
        lambda alive: not alive,
        timeout=GONE_WITHIN_SECONDS,
        what="the runs to die with their runner",
    )
    await asyncio.sleep(0.5)  # time for a body started for the dead runner to show itself
    starts = [
        float(line.split()[2]) for line in out.read_text().splitlines() if line.startswith("start")
    ]
    # A run checks that its runner lives as the last thing before its body; only one
    # preempted in the microseconds between that check and the body's first line can
    # begin after the death, and then only by the time it was kept waiting.
    assert max(starts) < dead + LAST_CHECK_SLACK_SECONDS, "a body started after its runner died"


async def test_runs_of_a_killed_fork_server_get_a_new_attempt(
    settings: Settings, tmp_path: Path
) -> None:
    """As an OOM killer might: the fork server is infrastructure, not the runs' fault."""
    out = tmp_path / "markers"
    runner = make_runner(settings, limit=4)
    deployment_id = await runner.add_flow(extra.touch_retried)
    async with running(runner), get_client(settings) as client:
        ids = [
            (
                await client.create_flow_run_from_deployment(
                    deployment_id, {"t0": i, "out": str(out), "sleep": 60, "retry_sleep": 0}
                )
            ).id
            for i in range(4)
        ]
        for run_id in ids:
            await wait_for_state(client.store, run_id, {StateType.RUNNING})
        (server,) = fork_servers()
        os.kill(server, signal.SIGKILL)
        runs = [await wait_for_state(client.store, run_id, timeout=30) for run_id in ids]
    for t0, run in enumerate(runs):
        assert run.state.type == StateType.COMPLETED, run.state.message
        assert run.run_count == 2
        assert markers(out, "start").count(t0) == 2


class KilledAsARunStarts(ForkServerStarter):
    """A real fork server, killed (as an OOM killer might) just as the second run is asked
    for: the runner has not yet seen it go when it sends the request."""

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    async def start(self, job: ChildJob) -> ChildProcess:
        self.starts += 1
        if self.starts == 2:
            (server,) = fork_servers()
            os.kill(server, signal.SIGKILL)
            while _alive(server):  # no await: the runner's loop must not see it go
                time.sleep(0.001)
        return await super().start(job)


def _alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:  # reaped already
        return False


async def test_a_run_whose_fork_server_dies_as_it_starts_gets_a_new_attempt(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "markers"
    runner = make_runner(settings, starter=KilledAsARunStarts())
    deployment_id = await runner.add_flow(extra.touch_retried)
    async with running(runner), get_client(settings) as client:
        for t0 in range(2):
            run = await client.create_flow_run_from_deployment(
                deployment_id, {"t0": t0, "out": str(out)}
            )
            done = await wait_for_state(client.store, run.id, timeout=30)
            assert done.state.type == StateType.COMPLETED, done.state.message
        history = await client.read_state_history(run.id)
    assert done.run_count == 2
    assert any("the fork server" in (state.message or "") for state in history), history
    assert markers(out, "start").count(1) == 1


@pytest.mark.parametrize(
    ("flow", "expected"), [("retried_once", StateType.COMPLETED), ("add", StateType.CRASHED)]
)
async def test_a_run_the_fork_server_died_starting_counts_as_one_of_its_runs(
    settings: Settings, flow: str, expected: StateType
) -> None:
    """Killed with the run's fork asked for and not yet answered: a retry if it has one left."""
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(getattr(extra if flow == "retried_once" else basic, flow))
    async with running(runner), get_client(settings) as client:
        warm = await client.create_flow_run_from_deployment(deployment_id, {"x": 1})
        await wait_for_state(client.store, warm.id)  # the fork server is up
        starter = runner._starter  # type: ignore[attr-defined]
        server = starter._process
        os.kill(server.pid, signal.SIGSTOP)  # it takes the request and never answers
        run = await client.create_flow_run_from_deployment(deployment_id, {"x": 2})
        await eventually(
            lambda: asyncio.sleep(0, len(starter._started)), bool, what="the fork to be asked"
        )
        os.kill(server.pid, signal.SIGKILL)
        done = await wait_for_state(client.store, run.id, timeout=30)
        after = await client.create_flow_run_from_deployment(deployment_id, {"x": 3})
        served_on = await wait_for_state(client.store, after.id, timeout=30)
    assert done.state.type == expected, done.state.message
    if expected == StateType.COMPLETED:
        assert (done.result, done.run_count) == (2, 2)
    else:
        assert "the fork server that started its process died" in (done.state.message or "")
    assert served_on.state.type == StateType.COMPLETED, "a new fork server serves on"


async def test_a_dead_runners_runs_are_taken_over_within_the_heartbeat_timeout(
    database_url: str, tmp_path: Path
) -> None:
    """Polling rarely, a runner still takes them over one recovery interval after the timeout."""
    timeout, margin = 3.0, 0.5
    settings = Settings(
        home=tmp_path / "home",
        database_url=database_url,
        runner_heartbeat_timeout_seconds=timeout,
        runner_lease_margin_seconds=margin,
    )
    runner = make_runner(settings, query_seconds=600)  # a poll never comes in time
    deployment_id = await runner.add_flow(basic.add)
    async with running(runner), get_client(settings) as client:
        await eventually(
            lambda: asyncio.sleep(0, runner._session.liveness.polls),  # type: ignore[union-attr]
            bool,
            what="the first poll and its recovery",
        )
        # A runner on another machine claims and starts a run, and dies at once.
        remote = RunnerRecord(name="far-away", host="another-machine", pid=1)
        store = client.store.sync
        store.register_runner(remote)
        later = utcnow() + timedelta(hours=1)  # not for this runner to claim first
        new = NewFlowRun(flow_name="add", deployment_id=deployment_id, expected_start_time=later)
        run, _ = store.create_flow_run(new)
        store.claim_flow_run(run.id, remote)
        store.set_state(run.id, State(type=StateType.RUNNING), pid=1)
        bound = (
            timeout
            + margin
            + recovery_seconds(timeout, runner.query_seconds)
            + CANCEL_CHECK_SECONDS
        )
        taken = await wait_for_state(client.store, run.id, timeout=bound + LOADED_SLACK_SECONDS)
        assert taken.state.type == StateType.CRASHED
        assert "stopped sending heartbeats" in (taken.state.message or "")
        assert (utcnow() - remote.heartbeat).total_seconds() < bound + LOADED_SLACK_SECONDS

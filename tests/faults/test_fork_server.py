"""The fork server killed under load: runs with retries left run again, the runner goes on."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    TRIGGER_BOUND_SECONDS,
    Load,
    Scene,
    bodies_ended,
    bodies_running,
    ended_at_exit,
    fork_server_of,
    settle,
    start_serving,
    summary,
    wait_for,
)
from tests.faults.invariants import assert_nothing_lost, assert_within

pytestmark = pytest.mark.timeout(150)


async def test_runs_of_a_killed_fork_server_run_again_and_the_runner_serves_on(
    tmp_path: Path,
) -> None:
    """On SQLite only: the fork server knows nothing of the store."""
    scene = Scene(tmp_path, f"sqlite:///{tmp_path / 'headrace.db'}")
    with ended_at_exit() as started:
        served = start_serving(scene)
        started.append(served)
        load = Load(scene, served, seconds=0.5)
        try:
            firing = asyncio.create_task(load.fire(20, concurrency=6, over=1.5))
            await wait_for(bodies_ended(scene, 2), "two bodies to end before the kill")
            await wait_for(bodies_running(scene, 2, of_each_flow=True), "both flows to run")
            doomed = fork_server_of(served.pid)
            assert doomed is not None, "the runner has no fork server"
            os.kill(doomed, signal.SIGKILL)
            killed = time.monotonic()
            await firing
            after = await load.fire(6)
            runs, _ = await settle(scene)
            all_ended = time.monotonic() - killed
            successor = fork_server_of(served.pid)
        finally:
            await load.close()
        markers = scene.markers()
        retried = [run for run in runs.values() if run.flow_name == "marked-retried"]
        again = [run for run in retried if run.run_count > 1]
        line = summary(
            f"fork-server-kill {scene.store_kind}",
            load.requests,
            runs,
            retried_again=len(again),
            all_ended_after_kill_s=all_ended,
        )
    assert_nothing_lost(load.requests, runs, markers)
    assert_within(load.requests, TRIGGER_BOUND_SECONDS)
    assert all(run.state == "COMPLETED" for run in retried), (
        line,
        [(run.id, run.run_count, run.history) for run in retried if run.state != "COMPLETED"],
    )
    assert again, f"the kill caught no run with retries: {line}"
    assert all(r.status == 201 for r in after), after
    assert successor != doomed, f"the fork server was not replaced: {successor}"

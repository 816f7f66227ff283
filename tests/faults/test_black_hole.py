"""A black-holed database connection: triggers answer 503 in time, then all recovers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    HEARTBEAT_TIMEOUT_SECONDS,
    TRIGGER_BOUND_SECONDS,
    Load,
    Scene,
    bodies_ended,
    bodies_running,
    ended_at_exit,
    in_flight_at,
    settle,
    start_serving,
    summary,
    wait_for,
)
from tests.faults.invariants import assert_nothing_lost, assert_within
from tests.integration.dbproxy import proxy_for

pytestmark = [pytest.mark.timeout(150), pytest.mark.postgres]

HOLE_SECONDS = HEARTBEAT_TIMEOUT_SECONDS + 1.0
"""Past two thirds of the heartbeat timeout: the runner gives its runs up meanwhile."""


def ready_is(url: str, code: int) -> bool:
    try:
        return httpx.get(f"{url}/ready", timeout=TRIGGER_BOUND_SECONDS).status_code == code
    except httpx.TransportError:
        return False


async def test_a_black_holed_database_answers_503_in_time_and_the_runner_recovers(
    postgres_url: str, tmp_path: Path
) -> None:
    with proxy_for(postgres_url) as proxy, ended_at_exit() as started:
        scene = Scene(tmp_path, postgres_url, served_database_url=proxy.url_for(postgres_url))
        served = start_serving(scene)
        started.append(served)
        load = Load(scene, served, seconds=0.5)
        try:
            firing = asyncio.create_task(load.fire(16, concurrency=4, over=1.5))
            await wait_for(bodies_ended(scene, 2), "two bodies to end before the black hole")
            await wait_for(bodies_running(scene, 2), "two bodies to run at the black hole")
            proxy.black_hole()
            holed, holed_at = time.monotonic(), time.time()
            red = await wait_for(lambda: ready_is(served.url, 503), "/ready to turn 503")
            during = [await load.trigger() for _ in range(3)]
            await asyncio.sleep(max(0.0, HOLE_SECONDS - (time.monotonic() - holed)))
            await firing
            proxy.resume()
            green = await wait_for(lambda: ready_is(served.url, 200), "/ready to turn 200")
            after = await load.fire(6)
            runs, _ = await settle(scene)
        finally:
            await load.close()
        markers = scene.markers()
        refused = [r for r in load.requests if r.status == 503]
        in_flight = in_flight_at(markers, holed_at)
        summary(
            "black-hole postgresql",
            load.requests,
            runs,
            hole_s=HOLE_SECONDS,
            in_flight=len(in_flight),
            refused_503=len(refused),
            slowest_503_s=max(r.seconds for r in refused),
            ready_503_after_s=red,
            ready_200_after_resume_s=green,
        )
    assert_nothing_lost(load.requests, runs, markers)
    assert_within(load.requests, TRIGGER_BOUND_SECONDS)
    assert [r.status for r in during] == [503] * 3, during
    assert in_flight, "the black hole caught no run in flight"
    assert all(r.status == 201 for r in after), after

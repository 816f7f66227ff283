"""The store goes away while runs are in flight: PostgreSQL stopped, SQLite's disk full.

Every run still ends exactly once after the condition clears, and no request
waits past its bound meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import (
    HEARTBEAT_TIMEOUT_SECONDS,
    TRIGGER_BOUND_SECONDS,
    Load,
    Scene,
    Served,
    bodies_started,
    ended_at_exit,
    in_flight_at,
    settle,
    start_serving,
    summary,
    wait_for,
)
from tests.faults.invariants import Request, assert_nothing_lost, assert_within
from tests.faults.postgres_cluster import throwaway_cluster

pytestmark = pytest.mark.timeout(150)

OUTAGES = {
    "short": HEARTBEAT_TIMEOUT_SECONDS / 3,
    "past-the-lease": HEARTBEAT_TIMEOUT_SECONDS + 1.0,
}
"""Shorter than two thirds of the heartbeat timeout, outcomes wait in the runner; longer,
the runner gives its runs up (kills them) and resolves them once the store is back."""
BODY_SECONDS = {"short": 1.0, "past-the-lease": HEARTBEAT_TIMEOUT_SECONDS}
"""Past the lease, bodies outlast it: the runner kills them, and they run again or crash."""
TMPFS_BYTES = 16 * 1024 * 1024
FULL_SECONDS = 9.0
"""Longer than a runner tries to store an outcome the database refuses (5 tries, 7.5 s):
it gives those up, and recovery stores them from the journal once the disk has room."""


def ready(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/ready", timeout=TRIGGER_BOUND_SECONDS).status_code == 200
    return False


async def during_and_after(
    load: Load, served: Served, seconds: float, clear: object
) -> tuple[list[Request], float, list[Request]]:
    """Triggers while the fault lasts ``seconds``, then ``clear()`` it, and triggers after."""
    began = time.monotonic()
    during = []
    while time.monotonic() - began < seconds:
        during.append(await load.trigger())
        await asyncio.sleep(0.2)
    await asyncio.to_thread(clear)  # type: ignore[arg-type]
    back = await wait_for(lambda: ready(served.url), "/ready to turn 200 again")
    load.seconds = 0.2
    return during, back, await load.fire(6)


@pytest.mark.parametrize("outage", OUTAGES)
async def test_runs_end_once_after_postgresql_is_stopped_and_started_again(
    outage: str, tmp_path: Path
) -> None:
    with throwaway_cluster() as cluster, ended_at_exit() as started:
        scene = Scene(tmp_path, cluster.url)
        served = start_serving(scene)
        started.append(served)
        load = Load(scene, served, seconds=BODY_SECONDS[outage])
        try:
            firing = asyncio.create_task(load.fire(6, concurrency=4, over=0.5))
            await wait_for(bodies_started(scene, 4), "four bodies to start before the outage")
            stopped_at = time.time()
            await asyncio.to_thread(cluster.stop, "immediate")
            await firing
            during, back, after = await during_and_after(
                load, served, OUTAGES[outage], cluster.start
            )
            runs, _ = await settle(scene)
        finally:
            await load.close()
        markers = scene.markers()
        in_flight = in_flight_at(markers, stopped_at)
        summary(
            f"postgresql-stopped {outage}",
            load.requests,
            runs,
            outage_s=OUTAGES[outage],
            in_flight=len(in_flight),
            refused_during=sum(r.status == 503 for r in during),
            ready_after_start_s=back,
        )
    assert_nothing_lost(load.requests, runs, markers)
    assert_within(load.requests, TRIGGER_BOUND_SECONDS)
    assert during and all(r.status == 503 for r in during), during
    assert in_flight, "the outage caught no run in flight"
    assert all(r.status == 201 for r in after), after


@contextlib.contextmanager
def small_disk(directory: Path) -> Iterator[Path]:
    """A tmpfs of ``TMPFS_BYTES`` mounted on ``directory``; skips where nothing can mount."""
    directory.mkdir()
    size = f"size={TMPFS_BYTES}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", size, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for a full disk: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of ``directory``'s file system; delete the file to free them."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with contextlib.suppress(OSError), filler.open("wb") as handle:
        while True:
            handle.write(chunk)
            handle.flush()
    return filler


async def test_runs_end_once_after_the_sqlite_disk_was_full(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk, ended_at_exit() as started:
        scene = Scene(tmp_path, f"sqlite:///{disk / 'headrace.db'}")
        served = start_serving(scene)
        started.append(served)
        load = Load(scene, served, seconds=1.0)
        try:
            firing = asyncio.create_task(load.fire(12, concurrency=4, over=1.0))
            await wait_for(bodies_started(scene, 4), "four bodies to start before the disk fills")
            filled_at = time.time()
            filler = await asyncio.to_thread(fill, disk)
            await firing
            seconds = FULL_SECONDS
            during, back, after = await during_and_after(load, served, seconds, filler.unlink)
            runs, _ = await settle(scene)
        finally:
            await load.close()
        markers = scene.markers()
        in_flight = in_flight_at(markers, filled_at)
        summary(
            "sqlite-disk-full",
            load.requests,
            runs,
            full_s=seconds,
            in_flight=len(in_flight),
            refused_during=sum(r.status == 507 for r in during),
            ready_after_freeing_s=back,
        )
    assert_nothing_lost(load.requests, runs, markers)
    assert_within(load.requests, TRIGGER_BOUND_SECONDS)
    assert all(r.status in (201, 507) for r in during), during
    assert in_flight, "the full disk caught no run in flight"
    assert all(r.status == 201 for r in after), after

"""Hundreds of idle connections to the runner's port: triggers are still answered in time."""

from __future__ import annotations

import asyncio
import socket
import statistics
from pathlib import Path

import pytest

from tests.faults.harness import (
    TRIGGER_BOUND_SECONDS,
    Load,
    Scene,
    ended_at_exit,
    settle,
    start_serving,
    summary,
)
from tests.faults.invariants import assert_nothing_lost, assert_within

pytestmark = pytest.mark.timeout(150)

IDLE_CONNECTIONS = 500


def flood(port: int) -> list[socket.socket]:
    """Connections that never send a byte."""
    return [
        socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(IDLE_CONNECTIONS)
    ]


async def test_triggers_are_answered_in_time_through_an_idle_connection_flood(
    tmp_path: Path,
) -> None:
    scene = Scene(tmp_path, f"sqlite:///{tmp_path / 'headrace.db'}")
    with ended_at_exit() as started:
        served = start_serving(scene)
        started.append(served)
        load = Load(scene, served, seconds=0.1)
        idle = await asyncio.to_thread(flood, served.port)
        try:
            during = await load.fire(40, concurrency=4, over=3.0)
            still_open = sum(_open(sock) for sock in idle)
        finally:
            for sock in idle:
                sock.close()
            await load.close()
        runs, _ = await settle(scene)
        markers = scene.markers()
        times = [r.seconds for r in during]
        summary(
            "idle-flood sqlite",
            load.requests,
            runs,
            idle_connections=IDLE_CONNECTIONS,
            held_to_the_end=still_open,
            trigger_p50_s=statistics.median(times),
            trigger_max_s=max(times),
        )
    assert_nothing_lost(load.requests, runs, markers)
    assert_within(load.requests, TRIGGER_BOUND_SECONDS)
    assert all(r.status == 201 for r in during), during
    assert still_open > IDLE_CONNECTIONS // 2, "the flood was not held while triggers ran"


def _open(sock: socket.socket) -> bool:
    """Whether the server still holds this connection (it closes idle ones after a while)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False

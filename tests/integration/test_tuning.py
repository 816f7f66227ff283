"""Serving-process tuning: applied by the serving entry points only, never on import."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import asyncio, gc, sys
from headrace.runner import serving


class Runner:  # what serve_until_stopped asks of a runner
    handle_signals = False
    is_serving = False

    async def start(self):
        self.is_serving = True
        await asyncio.sleep(0.2)

    async def stop(self):
        pass


if {serving}:
    serving.tune_for_serving(pin_cpu=False, migrate_in_child=False)
asyncio.run(serving.serve_until_stopped(Runner(), freeze_heap={serving}))
print(gc.get_freeze_count(), sys.getswitchinterval())
"""


@pytest.mark.parametrize("serving", [True, False])
def test_only_a_serving_process_freezes_its_heap(serving: bool) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(serving=serving)],
        capture_output=True,
        text=True,
        check=True,
    )
    frozen, interval = result.stdout.split()
    if serving:
        assert int(frozen) > 10_000  # everything imported so far is out of the collector's sight
        assert float(interval) < 0.001
    else:
        assert int(frozen) == 0
        assert float(interval) == 0.005

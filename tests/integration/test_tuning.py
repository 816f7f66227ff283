"""Serving-process tuning: applied by the serving entry points only, never on import."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import gc, sys
from headrace.runner import serving as tuning
if {serving}:
    tuning.tune_for_serving()
tuning.settle_heap()
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

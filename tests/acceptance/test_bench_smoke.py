"""The benchmark runs end to end (`python bench/run.py --quick`): a smoke test, no thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


@pytest.mark.slow
def test_quick_benchmark_measures_every_metric(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json-out", str(out)],
        cwd=ROOT,
        check=True,
        timeout=280,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
    )
    metrics = json.loads(out.read_text())
    for key in (
        "M1 trigger latency",
        "M2 trigger throughput",
        "M2 refusal throughput",
        "M3 trigger->body start",
        "M4 completion throughput",
        "M5 idle memory (tree)",
        "M6 GET /health",
        "M7 POST /flow/run",
        "M8 poll query",
        "M8 M1 with many runs",
        "M8 build_server",
    ):
        assert key in metrics, key
    assert metrics["M2 trigger throughput"]["errors"] == 0
    assert metrics["M2 refusal throughput"]["refused_per_s"] > 0
    m4 = metrics["M4 completion throughput"]
    assert m4["runs"] == m4["started"] > 0
    assert metrics["M7 POST /flow/run"]["statuses"] == {"201": 10}
    assert any("INDEX" in line for line in metrics["M8 poll query"]["plan"])

"""The service files in ``deploy/`` stop a runner the way Ctrl-C does, after its grace period."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from headrace.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CLOSE_MARGIN_SECONDS = 10
"""At least this long past the grace period for the runner to record the runs' ends."""


def grace_in(text: str) -> float:
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    match = re.search(r"HEADRACE_RUNNER_SHUTDOWN_GRACE_SECONDS\D{0,12}?(\d+)", settings)
    assert match, "the file sets the grace period it is tuned to"
    return float(match[1])


def test_the_systemd_unit_signals_only_the_runner_and_waits_out_its_grace() -> None:
    text = (DEPLOY / "headrace.service").read_text()
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment, method-assign]
    unit.read_string(text)
    service = unit["Service"]
    assert service["KillMode"] == "mixed", "SIGTERM to the runner only, as Ctrl-C"
    assert service["Restart"] == "on-failure"
    grace = grace_in(text)
    assert grace == Settings().runner_shutdown_grace_seconds
    assert float(service["TimeoutStopSec"]) >= grace + CLOSE_MARGIN_SECONDS


def test_kubernetes_and_docker_wait_out_the_grace_period() -> None:
    for name, key in [
        ("kubernetes.yaml", r"terminationGracePeriodSeconds: (\d+)"),
        ("docker-compose.yaml", r"stop_grace_period: (\d+)s"),
    ]:
        text = (DEPLOY / name).read_text()
        match = re.search(key, text)
        assert match, name
        assert float(match[1]) >= grace_in(text) + CLOSE_MARGIN_SECONDS, name

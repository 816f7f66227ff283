"""A runner's process is dead once killed, whether or not its parent has reaped it yet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from headrace.runner.recovery import pid_alive, process_start


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def test_a_killed_process_its_parent_has_not_waited_for_is_dead() -> None:
    """As a runner killed under a supervisor that reaps late: recovery must not wait on it."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = process_start(child.pid)
        assert pid_alive(child.pid, started)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z":  # killed, not reaped: a zombie
            assert time.monotonic() < deadline, "the child did not die"
            time.sleep(0.01)
        assert not pid_alive(child.pid, started)
    finally:
        child.kill()
        child.wait(timeout=10)

"""deploy/Dockerfile's install and start commands work: ``deploy/image-check.sh --lean``
installs headrace as the image does (its dependencies taken from this environment rather
than downloaded), starts the image's command, probes /health and /ready, stops it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)


@pytest.mark.slow
def test_the_image_installs_starts_answers_and_stops(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ROOT / "deploy" / "image-check.sh"), "--lean"],
        env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)},
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed headrace (.[fast])" in done.stdout
    assert "headrace serve examples/hello.py:hello --host 127.0.0.1" in done.stdout
    assert "/health and /ready answer 200" in done.stdout
    assert "stopped by SIGTERM: exit 0" in done.stdout
    assert list(tmp_path.iterdir()) == [], "the check leaves nothing behind"

"""``headrace ui`` as a person starts it: it says where the dashboard is, serves it over
the configured database, and stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from headrace.deployments import DeploymentSpec
from headrace.store import SQLStore
from tests.helpers import free_port

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def test_headrace_ui_serves_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ui.db'}"
    store = SQLStore(url)
    deployment = store.upsert_deployment(
        DeploymentSpec(name="nightly", flow_name="etl", entrypoint="x.py:etl")
    )
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADRACE_")}
    env.update(HEADRACE_HOME=str(tmp_path / "home"), HEADRACE_DATABASE_URL=url, COLUMNS="200")
    port = free_port()
    command = [sys.executable, "-m", "headrace", "ui", "--host", "127.0.0.1", "--port", str(port)]
    with subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            assert f"http://127.0.0.1:{port}/ui/" in banner, banner
            base = f"http://127.0.0.1:{port}"
            page = httpx.get(f"{base}/ui/deployments", timeout=10)
            assert page.status_code == 200 and "etl/nightly" in page.text
            made = httpx.post(f"{base}/deployment/{deployment.id}/run", json={}, timeout=10)
            assert made.status_code == 201
            run = httpx.get(f"{base}/flow_runs/{made.json()['flow_run_id']}", timeout=10).json()
            assert run["state"]["type"] == "SCHEDULED"  # nobody here runs it
            missing = httpx.post(f"{base}/deployment/{uuid4()}/run", json={}, timeout=10)
            assert missing.status_code == 404
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0

"""``headrace serve --notify``: a failed run of the served flow is POSTed, signed, and the
delivery is shown by the run's ``/notifications``."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.acceptance.test_cli_e2e import COMMAND_SECONDS, SHUTDOWN_SECONDS, cli_env, serving
from tests.integration.receiver import receiving

__all__ = ["cli_env"]

pytestmark = pytest.mark.timeout(120)


def notifications(base: str, run_id: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = httpx.get(f"{base}/flow_runs/{run_id}/notifications").json()
    return found


def test_serve_notify_posts_a_failed_run_signed(cli_env: dict[str, str], tmp_path: Path) -> None:
    with receiving() as receiver:
        options = ["--notify", receiver.url, "--notify-secret", "s3cret"]
        with serving(cli_env, tmp_path, "tests/flows/basic.py:fail", *options) as served:
            process, banner = served
            match = re.search(r"POST (http://\S+)/deployment/\S+/run", banner)
            assert match, banner
            base = match.group(1)
            trigger = f"{match.group(0).removeprefix('POST ')}?wait=30"
            created = httpx.post(trigger, json={}, timeout=COMMAND_SECONDS)
            run_id = created.json()["flow_run_id"]
            deadline = time.monotonic() + 20
            while not (shown := notifications(base, run_id)) and time.monotonic() < deadline:
                time.sleep(0.05)  # recorded once the receiver answered
            process.send_signal(signal.SIGTERM)
            assert process.wait(SHUTDOWN_SECONDS) == 0
    [post] = receiver.seen()
    payload = json.loads(post.body)
    assert (payload["id"], payload["event"]) == (run_id, "flow_run.failed")
    signed = post.headers["X-Headrace-Timestamp"].encode() + b"." + post.body
    mac = hmac.new(b"s3cret", signed, hashlib.sha256).hexdigest()
    assert post.headers["X-Headrace-Signature"] == f"sha256={mac}"
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in shown] == [(1, 200, True)]

"""``wait_for_submitted_runs()`` with no filter waits for what this process submitted."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from headrace import submission
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.submission import submit_to_runner, wait_for_submitted_runs
from tests.flows import basic


def run_body(run_id: UUID, state: str) -> dict[str, Any]:
    now = utcnow().isoformat()
    return {
        "id": str(run_id),
        "name": "calm-otter",
        "flow_name": "add",
        "state": {"type": state, "name": state.capitalize(), "timestamp": now},
        "created": now,
        "updated": now,
    }


def test_wait_without_a_filter_waits_for_every_submitted_run(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "_submitted", [])
    settings = Settings(home=tmp_path, runner_server_host="127.0.0.1", runner_server_port=1)
    ids = [uuid4(), uuid4()]
    polls: dict[UUID, int] = {}
    created = iter(ids)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            assert json.loads(request.content)["entrypoint"] == "tests.flows.basic:add"
            return httpx.Response(201, json=run_body(next(created), "SCHEDULED"))
        run_id = UUID(request.url.path.rsplit("/", 1)[1])
        polls[run_id] = polls.get(run_id, 0) + 1
        state = "COMPLETED" if polls[run_id] > 1 else "RUNNING"
        return httpx.Response(200, json=run_body(run_id, state))

    transport = httpx.MockTransport(handle)
    runs = submit_to_runner(basic.add, [{"x": 1}, {"x": 2}], settings=settings, transport=transport)
    assert [run.id for run in runs] == ids
    done = wait_for_submitted_runs(
        settings=settings, poll_seconds=0.01, timeout=10, transport=transport
    )
    assert [(run.id, run.state.type.value) for run in done] == [(i, "COMPLETED") for i in ids]
    assert wait_for_submitted_runs(settings=settings, timeout=1, transport=transport) == []

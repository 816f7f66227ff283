"""``submit_to_runner`` and ``wait_for_submitted_runs`` against a scripted webserver."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from headrace import submission
from headrace.exceptions import ParameterValidationError, RunnerUnreachable, SubmissionError
from headrace.settings import Settings
from headrace.states import utcnow
from headrace.submission import runner_url, submit_to_runner, wait_for_submitted_runs
from tests.flows import basic

Handler = Callable[[httpx.Request], httpx.Response]


def run_body(run_id: UUID | None = None, state: str = "SCHEDULED", **extra: Any) -> dict[str, Any]:
    now = utcnow().isoformat()
    return {
        "id": str(run_id or uuid4()),
        "name": "calm-otter",
        "flow_name": "add",
        "state": {"type": state, "name": state.capitalize(), "timestamp": now},
        "created": now,
        "updated": now,
        **extra,
    }


def scripted(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queue.pop(0)

    return httpx.MockTransport(handle), seen


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(home=tmp_path, runner_server_host="127.0.0.1", runner_server_port=8765)


def test_one_dict_gives_one_run_and_a_list_gives_a_list(settings: Settings) -> None:
    transport, seen = scripted(*(httpx.Response(201, json=run_body()) for _ in range(3)))
    one = submit_to_runner(basic.add, {"x": 1}, settings=settings, transport=transport)
    assert one.flow_name == "add"
    many = submit_to_runner(basic.add, [{"x": 2}, {"x": 3}], settings=settings, transport=transport)
    assert len(many) == 2
    bodies = [json.loads(request.content) for request in seen]
    assert [b["parameters"] for b in bodies] == [{"x": 1}, {"x": 2}, {"x": 3}]
    assert {b["entrypoint"] for b in bodies} == {"tests.flows.basic:add"}
    assert str(seen[0].url) == "http://127.0.0.1:8765/flow/run"
    assert "authorization" not in seen[0].headers


def test_api_key_is_sent(settings: Settings) -> None:
    keyed = settings.model_copy(update={"api_key": "k"})
    transport, seen = scripted(httpx.Response(201, json=run_body()))
    submit_to_runner("tests.flows.basic:add", {"x": 1}, settings=keyed, transport=transport)
    assert seen[0].headers["authorization"] == "Bearer k"


def test_a_full_backlog_is_retried_after_retry_after(settings: Settings) -> None:
    busy = httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "full"})
    transport, seen = scripted(busy, busy, httpx.Response(201, json=run_body()))
    submit_to_runner(basic.add, {"x": 1}, settings=settings, transport=transport)
    assert len(seen) == 3


def test_retries_are_bounded(settings: Settings) -> None:
    busy = httpx.Response(429, headers={"Retry-After": "5"}, json={"message": "full"})
    transport, seen = scripted(busy, busy)
    with pytest.raises(SubmissionError, match="429"):
        submit_to_runner(
            basic.add, {"x": 1}, settings=settings, transport=transport, max_retry_seconds=1
        )
    transport, seen = scripted(busy)
    with pytest.raises(SubmissionError):
        submit_to_runner(basic.add, {"x": 1}, False, settings=settings, transport=transport)
    assert len(seen) == 1


def test_refusals_become_clear_errors(settings: Settings) -> None:
    invalid = {"message": "Invalid", "errors": [{"parameter": "x", "message": "bad"}]}
    transport, _ = scripted(
        httpx.Response(400, json=invalid),
        httpx.Response(401, json={"message": "no"}),
        httpx.Response(403, json={"message": "not in the import space"}),
    )
    with pytest.raises(ParameterValidationError) as raised:  # by entrypoint: the runner checks
        submit_to_runner(
            "tests.flows.basic:add", {"x": "a"}, settings=settings, transport=transport
        )
    assert raised.value.parameter_names == ["x"]
    with pytest.raises(SubmissionError, match="HEADRACE_API_KEY"):
        submit_to_runner(basic.add, {"x": 1}, settings=settings, transport=transport)
    with pytest.raises(SubmissionError, match="import space"):
        submit_to_runner(basic.add, {"x": 1}, settings=settings, transport=transport)
    with pytest.raises(TypeError):
        submit_to_runner(print, {})  # type: ignore[arg-type]


def test_a_list_with_a_bad_dict_sends_none_of_them(settings: Settings) -> None:
    transport, seen = scripted()
    with pytest.raises(ParameterValidationError, match=r"Parameters #1: .*x") as raised:
        submit_to_runner(basic.add, [{"x": 1}, {"x": "a"}], settings=settings, transport=transport)
    assert raised.value.parameter_names == ["x"]
    assert seen == []


def test_runs_created_before_a_refusal_are_still_waited_for(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(submission, "_submitted", [])  # only this test's submissions
    first = run_body()
    invalid = {"message": "Invalid", "errors": [{"parameter": "x", "message": "bad"}]}
    transport, _ = scripted(httpx.Response(201, json=first), httpx.Response(400, json=invalid))
    with pytest.raises(ParameterValidationError, match="Parameters #1"):
        submit_to_runner(
            "tests.flows.basic:add", [{"x": 1}, {"x": "a"}], settings=settings, transport=transport
        )
    ended = run_body(UUID(first["id"]), "COMPLETED")
    transport, seen = scripted(httpx.Response(200, json=ended))
    (done,) = wait_for_submitted_runs(settings=settings, transport=transport, poll_seconds=0)
    assert str(done.id) == first["id"] and str(seen[0].url).endswith(first["id"])


def test_no_webserver_says_how_to_start_one(settings: Settings) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(RunnerUnreachable, match="headrace serve") as raised:
        submit_to_runner(
            basic.add, {"x": 1}, settings=settings, transport=httpx.MockTransport(refuse)
        )
    assert "http://127.0.0.1:8765" in str(raised.value)


def test_wait_for_submitted_runs_polls_until_the_end(settings: Settings) -> None:
    first, second = uuid4(), uuid4()
    states = {first: ["RUNNING", "COMPLETED"], second: ["FAILED"]}

    def handle(request: httpx.Request) -> httpx.Response:
        run_id = UUID(request.url.path.rsplit("/", 1)[1])
        state = states[run_id].pop(0) if len(states[run_id]) > 1 else states[run_id][0]
        return httpx.Response(200, json=run_body(run_id, state))

    done = wait_for_submitted_runs(
        [first, second], settings=settings, poll_seconds=0.01, transport=httpx.MockTransport(handle)
    )
    assert [(r.id, r.state.type.value) for r in done] == [(first, "COMPLETED"), (second, "FAILED")]


def test_wait_is_bounded(settings: Settings) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=run_body(UUID(request.url.path.rsplit("/", 1)[1]), "RUNNING")
        )

    with pytest.raises(TimeoutError, match="still not finished"):
        wait_for_submitted_runs(
            uuid4(),
            0.05,
            settings=settings,
            poll_seconds=0.01,
            transport=httpx.MockTransport(handle),
        )


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("localhost", "http://localhost:1"),
        ("0.0.0.0", "http://127.0.0.1:1"),
        ("::", "http://[::1]:1"),
        ("", "http://127.0.0.1:1"),
        ("[::1]", "http://[::1]:1"),
        ("fe80::1", "http://[fe80::1]:1"),
    ],
)
def test_runner_url(tmp_path: Any, host: str, url: str) -> None:
    assert runner_url(Settings(home=tmp_path, runner_server_host=host, runner_server_port=1)) == url

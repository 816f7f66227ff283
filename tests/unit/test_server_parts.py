"""Small parts of the webserver: request bodies, the backlog estimate, loopback detection."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from starlette.requests import Request

from headrace.runner.server import backlog as backlog_module
from headrace.runner.server.backlog import Backlog
from headrace.runner.server.hosts import is_loopback
from headrace.runner.server.json_io import BadRequestBody, read_json_object


def _request(body: bytes) -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST", "headers": []}, receive)


async def test_json_objects_pass_and_empty_means_the_default() -> None:
    assert await read_json_object(_request(b'{"a": [1, {"b": "c"}]}')) == {"a": [1, {"b": "c"}]}
    assert await read_json_object(_request(b"  "), empty={}) == {}
    with pytest.raises(BadRequestBody):
        await read_json_object(_request(b""))


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"1",
        b"{",
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"a\\u0000": 1}',
        b'{"a": ["\\u0000"]}',
        b'{"a": "\\ud800"}',
        b'{"a": {"b": ["x", "\\uDFFF"]}}',
        b'{"\\udc00": 1}',
        b'{"a": "\xed\xa0\x80"}',  # a surrogate's own UTF-8 bytes, not an escape
        b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}",
        b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a": 1' + b"0" * 5000 + b"}",
    ],
)
async def test_bodies_the_store_cannot_keep_are_refused(body: bytes) -> None:
    with pytest.raises(BadRequestBody):
        await read_json_object(_request(body))


async def test_strings_that_merely_look_like_nul_are_fine() -> None:
    body = json.dumps({"a": "\\u0000", "deep": [[["x"]]]}).encode()
    assert await read_json_object(_request(body)) == {"a": "\\u0000", "deep": [[["x"]]]}


async def test_paired_surrogates_are_characters_and_are_fine() -> None:
    body = b'{"a": "\\ud83d\\ude00", "\\ud83d\\udc4d": 1}'
    assert await read_json_object(_request(body)) == {"a": "\U0001f600", "\U0001f44d": 1}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"name": "\\ud800"}', "name: strings cannot contain unpaired surrogates"),
        (b'{"p": {"tags": ["a", "\\udfff"]}}', "p.tags[1]: strings cannot contain unpaired"),
        (b'{"p": {"\\ud800": 1}}', "p: keys cannot contain unpaired"),
        (b'{"x": "a\\u0000"}', "x: strings cannot contain NUL"),
    ],
)
async def test_an_unstorable_string_is_refused_with_where_it_is(body: bytes, named: str) -> None:
    with pytest.raises(BadRequestBody, match=re.escape(named)):
        await read_json_object(_request(body))


class _Store:
    def __init__(self) -> None:
        self.depth = 0
        self.counts = 0

    async def count_queued_runs(self, deployment_ids: Any, runner_id: Any, *, cap: int) -> int:
        self.counts += 1
        return min(self.depth, cap)


def _runner(store: _Store) -> SimpleNamespace:
    """The parts of a runner a backlog reads."""
    record = SimpleNamespace(id=uuid4(), name="r")
    return SimpleNamespace(
        store=store,
        deployment_ids=set(),
        record=record,
        name="r",
        query_seconds=0.2,
        claimed_total=0,
    )


async def test_backlog_counts_near_the_limit_and_estimates_far_from_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _Store()
    runner = _runner(store)
    backlog = Backlog(runner, limit=20)  # type: ignore[arg-type]
    assert await backlog.depth() == 0
    assert store.counts == 1
    for _ in range(10):
        backlog.queued()
        await backlog.depth()
    assert store.counts == 1, "far below the limit: estimated"
    for _ in range(8):
        backlog.queued()
    store.depth = 18
    assert await backlog.depth() == 18
    assert store.counts == 2, "within the margin of the limit: counted"
    store.depth = 20
    assert backlog.is_full(await backlog.depth())
    assert backlog.full(20).retry_after_seconds == 1
    assert store.counts == 3
    store.depth = 0  # another runner took them all
    monkeypatch.setattr(backlog_module, "MAX_ESTIMATE_AGE_SECONDS", 0.0)
    assert await backlog.depth() == 0
    await backlog.depth()
    assert store.counts == 5, "a stale estimate is counted again"


async def test_a_full_backlog_refuses_from_memory_until_the_runner_claims() -> None:
    store = _Store()
    runner = _runner(store)
    backlog = Backlog(runner, limit=20)  # type: ignore[arg-type]
    store.depth = 20
    assert backlog.is_full(await backlog.depth())
    for _ in range(100):
        assert backlog.is_full(await backlog.depth())
    assert store.counts == 1, "refusals cost no count"
    runner.claimed_total = 5  # the runner took five runs from the queue
    store.depth = 15
    assert await backlog.depth() == 15
    assert store.counts == 1, "the runner's own claims keep the estimate exact"
    for _ in range(5):
        backlog.queued()
    assert backlog.estimate() == 20
    runner.claimed_total = 0  # the runner was opened again: its claims start over
    assert await backlog.depth() == 15
    assert store.counts == 2


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "api_key", "warned"),
    [("0.0.0.0", None, True), ("0.0.0.0", "k", False), ("localhost", None, False)],
)
def test_exposed_without_a_key_is_warned_about(
    caplog: pytest.LogCaptureFixture, tmp_path: Any, host: str, api_key: str | None, warned: bool
) -> None:
    from headrace.runner.server.listen import _warn_if_exposed
    from headrace.settings import Settings

    settings = Settings(home=tmp_path, runner_server_host=host, api_key=api_key)
    with caplog.at_level("WARNING", logger="headrace.runner.server"):
        _warn_if_exposed(SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    assert ("without an API key" in caplog.text) is warned

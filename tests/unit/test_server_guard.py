"""The webserver's gate: Host, Origin, API key and body size, over a bare ASGI app (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from headrace.runner.server.hosts import allowed_hosts, allowed_origins, host_name
from headrace.runner.server.middleware import Guard
from headrace.settings import Settings


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def _client(guard: Guard) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://g")


async def test_key_is_needed_everywhere_but_health() -> None:
    async with _client(Guard(echo_length, api_key="k3y")) as client:
        assert (await client.get("/health")).status_code == 200
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k3y"}):
            response = await client.get("/anything", headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "HEADRACE_API_KEY" in response.json()["message"]
        for value in ("Bearer k3y", "bearer k3y", "BEARER  k3y "):
            assert (await client.get("/x", headers={"Authorization": value})).status_code == 200


async def test_no_key_means_no_check() -> None:
    async with _client(Guard(echo_length)) as client:
        assert (await client.get("/x", headers={"Authorization": "Bearer whatever"})).text == "0"


async def test_bodies_over_the_limit_are_413_however_they_arrive() -> None:
    async def chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 10):
            yield b"x" * 10

    async with _client(Guard(echo_length, max_body_bytes=100)) as client:
        assert (await client.post("/x", content=b"x" * 100)).text == "100"
        assert (await client.post("/x", content=b"x" * 101)).status_code == 413
        assert (await client.post("/x", content=chunks(200))).status_code == 413
        assert (await client.post("/x", content=chunks(100))).text == "100"
        bogus = await client.post("/x", content=b"x", headers={"Content-Length": "1e3"})
        assert bogus.status_code == 413


# -- Host and Origin -----------------------------------------------------------------------------


class Recorder:
    """An app that counts the requests that reached it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await echo_length(scope, receive, send)


def _at(guard: Guard, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url=base_url)


LOOPBACK = allowed_hosts(Settings(runner_server_host="localhost"))


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8080", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:9", "[::1]", "[::1]:80"],
)
async def test_a_loopback_bind_answers_its_loopback_names_on_any_port(host: str) -> None:
    app = Recorder()
    async with _client(Guard(app, allowed_hosts=LOOPBACK)) as client:
        assert (await client.get("/x", headers={"Host": host})).status_code == 200
    assert app.calls == 1


@pytest.mark.parametrize(
    "host",
    ["evil.example:8080", "evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "", "::1"],
)
async def test_any_other_host_is_400_before_the_route(host: str) -> None:
    app = Recorder()
    async with _client(Guard(app, allowed_hosts=LOOPBACK)) as client:
        response = await client.get("/x", headers={"Host": host})
    assert response.status_code == 400
    assert "HEADRACE_RUNNER_SERVER_ALLOWED_HOSTS" in response.json()["message"] or not host
    assert app.calls == 0


@pytest.mark.parametrize(
    ("settings", "host", "allowed"),
    [
        (Settings(runner_server_host="0.0.0.0"), "evil.example:8080", True),
        (Settings(runner_server_host="::"), "anything", True),
        (Settings(runner_server_host="127.0.0.2"), "127.0.0.2:8080", True),
        (Settings(runner_server_host="127.0.0.2"), "evil.example", False),
        (Settings(runner_server_allowed_hosts="*"), "evil.example", True),
        (Settings(runner_server_allowed_hosts="Runner.Internal:9"), "runner.internal:80", True),
        (Settings(runner_server_allowed_hosts="runner.internal, ::1"), "[::1]:8080", True),
        (Settings(runner_server_allowed_hosts="runner.internal"), "localhost:8080", False),
        (
            Settings(runner_server_host="0.0.0.0", runner_server_allowed_hosts="runner.internal"),
            "evil.example",
            False,
        ),
    ],
)
async def test_allowed_hosts_follow_the_bind_unless_configured(
    settings: Settings, host: str, allowed: bool
) -> None:
    guard = Guard(Recorder(), allowed_hosts=allowed_hosts(settings))
    async with _client(guard) as client:
        status = (await client.get("/x", headers={"Host": host})).status_code
    assert status == (200 if allowed else 400)


@pytest.mark.parametrize("path", ["/shutdown", "/flow/run", "/deployment/x/run", "/r/cancel"])
@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://localhost:9999", "null", "http://localhost"]
)
async def test_a_foreign_origin_cannot_post(path: str, origin: str) -> None:
    app = Recorder()
    async with _at(Guard(app), "http://localhost:8080") as client:
        response = await client.post(path, json={}, headers={"Origin": origin})
    assert response.status_code == 403
    assert "HEADRACE_RUNNER_SERVER_ALLOWED_ORIGINS" in response.json()["message"]
    assert app.calls == 0, "nothing reached the route"


async def test_its_own_origin_and_configured_ones_may_post() -> None:
    app = Recorder()
    origins = allowed_origins(Settings(runner_server_allowed_origins="https://ops.example/"))
    guard = Guard(app, allowed_hosts=LOOPBACK, allowed_origins=origins)
    async with _at(guard, "http://localhost:8080") as client:
        for origin in ("http://localhost:8080", "HTTP://LocalHost:8080", "https://ops.example"):
            response = await client.post("/x", content=b"ab", headers={"Origin": origin})
            assert response.text == "2", origin
        assert (await client.post("/x", content=b"ab")).status_code == 200, "no Origin: no check"
        reads = await client.get("/x", headers={"Origin": "http://evil.example"})
        assert reads.status_code == 200, "a page cannot read the answer: reads are not checked"
    assert app.calls == 5


async def test_any_origin_when_configured_so() -> None:
    guard = Guard(
        Recorder(), allowed_origins=allowed_origins(Settings(runner_server_allowed_origins="*"))
    )
    async with _client(guard) as client:
        response = await client.post("/x", headers={"Origin": "http://evil.example"})
    assert response.status_code == 200


async def test_host_is_checked_before_the_key_and_origin_before_the_key() -> None:
    guard = Guard(Recorder(), api_key="k", allowed_hosts=LOOPBACK)
    async with _at(guard, "http://localhost") as client:
        assert (await client.get("/x", headers={"Host": "evil.example"})).status_code == 400
        foreign = await client.post("/x", headers={"Origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert (await client.post("/x")).status_code == 401


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"localhost:8080", b"localhost"),
        (b"Example.ORG", b"example.org"),
        (b"[::1]:8080", b"[::1]"),
        (b"[::1]", b"[::1]"),
        (b"host:", b"host:"),
        (b"host:http", b"host:http"),
    ],
)
def test_host_name_drops_the_port_only(header: bytes, name: bytes) -> None:
    assert host_name(header) == name

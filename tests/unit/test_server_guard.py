"""The webserver's gate: API key and body size, over a bare ASGI app (no sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from headrace.runner.server.middleware import Guard


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

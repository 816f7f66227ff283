"""The webserver's gate in-process: the API key, and the request size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import utcnow
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)


async def test_api_key_guards_everything_but_health(sqlite_settings: Settings) -> None:
    keyed = sqlite_settings.model_copy(update={"api_key": "s3cret"})
    runner, ids = await served(keyed)
    runner.query_seconds = 60.0  # healthy for the whole test, however slow the machine
    runner.last_polled = utcnow()
    app = await build_server(runner)
    async with client(app) as c:
        assert (await c.get("/health")).status_code == 200
        probe = await c.head("/health")  # load balancers often probe with HEAD
        assert probe.status_code == 200 and probe.content == b""
        for method, path in [
            ("GET", "/openapi.json"),
            ("GET", "/docs"),
            ("GET", "/run_count"),
            ("POST", "/shutdown"),
            ("POST", f"/deployment/{ids['double']}/run"),
            ("GET", "/flow_runs"),
            ("GET", "/no/such/route"),
        ]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                response = await c.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["WWW-Authenticate"] == "Bearer"
    async with client(app, Authorization="Bearer s3cret") as c:
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/run_count")).status_code == 200
        ok = await c.post(f"/deployment/{ids['double']}/run", json={"x": 1})
        assert ok.status_code == 201
    async with client(app, Authorization="bearer s3cret") as c:
        assert (await c.get("/run_count")).status_code == 200


async def test_oversized_bodies_are_413(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    big = b'{"x": "' + b"a" * (1024 * 1024) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    async with client(app) as c:
        path = f"/deployment/{ids['double']}/run"
        assert (await c.post(path, content=big)).status_code == 413
        assert (await c.post(path, content=chunks())).status_code == 413
        assert (await c.post("/flow/run", content=big)).status_code == 413

        async def small() -> AsyncIterator[bytes]:
            yield b'{"x": '
            yield b"3}"

        assert (await c.post(path, content=small())).status_code == 201
    assert len(await runner.store.read_flow_runs()) == 1

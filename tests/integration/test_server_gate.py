"""Host and Origin over the real app and real uvicorn, and ``/docs`` served offline.

A web page open on the runner's machine must not be able to stop the runner,
start or cancel runs (a cross-origin POST), nor read runs by rebinding its own
name to 127.0.0.1 (a foreign Host).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest

from headrace.flow_runs import NewFlowRun
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from tests.flows import basic
from tests.helpers import eventually, free_port, make_runner, running
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(90)

PAGE = {"Origin": "http://evil.example"}


async def test_a_web_page_cannot_stop_start_cancel_or_read_over_real_http(
    sqlite_settings: Settings,
) -> None:
    port = free_port()
    settings = sqlite_settings.model_copy(
        update={"runner_server_host": "127.0.0.1", "runner_server_port": port}
    )
    runner = make_runner(settings, webserver=True)
    deployment = await runner.add_flow(basic.add, "adder", parameters={"x": 1})
    later = NewFlowRun(
        flow_name="add", deployment_id=deployment, expected_start_time=utcnow() + timedelta(hours=1)
    )
    scheduled, _ = await runner.store.create_flow_run(later)
    async with running(runner), httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c:
        await eventually(lambda: c.get("/health"), lambda r: r.status_code == 200)
        for path, body in [
            ("/shutdown", None),
            (f"/deployment/{deployment}/run", {}),
            ("/flow/run", {"entrypoint": "tests.flows.basic:add", "parameters": {"x": 1}}),
            (f"/flow_runs/{scheduled.id}/cancel", None),
        ]:
            refused = await c.post(path, json=body, headers=PAGE)
            assert refused.status_code == 403, path
            assert "Origin 'http://evil.example'" in refused.json()["message"]
        rebound = await c.get("/flow_runs", headers={"Host": "evil.example:8080"})
        assert rebound.status_code == 400
        assert str(scheduled.id) not in rebound.text
        assert "'evil.example:8080' is not allowed" in rebound.json()["message"]
        assert (await c.get("/health")).status_code == 200, "the runner still serves"
        assert runner.is_serving
        runs = await runner.store.read_flow_runs()
        assert [(r.id, r.state.type) for r in runs] == [(scheduled.id, StateType.SCHEDULED)]
        own = await c.get("/flow_runs", headers={"Origin": f"http://127.0.0.1:{port}"})
        assert own.status_code == 200 and str(scheduled.id) in own.text


async def test_loopback_names_are_answered_and_others_are_400(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        for host in ("localhost", "localhost:8080", "127.0.0.1:1234", "[::1]:8080"):
            assert (await c.get("/run_count", headers={"Host": host})).status_code == 200, host
        for host in ("evil.example:8080", "runner", "192.168.1.10:8080"):
            assert (await c.get("/run_count", headers={"Host": host})).status_code == 400, host


async def test_a_bind_beyond_loopback_answers_any_host(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings.model_copy(update={"runner_server_host": "0.0.0.0"}))
    app = await build_server(runner)
    async with client(app) as c:
        for host in ("evil.example:8080", "runner.internal", "10.0.0.5:8080"):
            assert (await c.get("/run_count", headers={"Host": host})).status_code == 200, host


async def test_allowed_hosts_replace_the_default(sqlite_settings: Settings) -> None:
    only = sqlite_settings.model_copy(update={"runner_server_allowed_hosts": "runner.internal"})
    app = await build_server((await served(only))[0])
    async with client(app) as c:
        assert (await c.get("/run_count", headers={"Host": "runner.internal:8080"})).is_success
        assert (await c.get("/run_count", headers={"Host": "localhost"})).status_code == 400
    anyone = sqlite_settings.model_copy(update={"runner_server_allowed_hosts": "*"})
    app = await build_server((await served(anyone))[0])
    async with client(app) as c:
        assert (await c.get("/run_count", headers={"Host": "evil.example"})).is_success


async def test_allowed_origins_may_trigger_runs(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.model_copy(
        update={"runner_server_allowed_origins": "https://ops.example.com"}
    )
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with client(app) as c:
        path = f"/deployment/{ids['double']}/run"
        ops = await c.post(path, json={"x": 1}, headers={"Origin": "https://ops.example.com"})
        assert ops.status_code == 201
        assert (await c.post(path, json={"x": 1}, headers=PAGE)).status_code == 403
        own = await c.post(path, json={"x": 1}, headers={"Origin": "http://localhost"})
        assert own.status_code == 201
    assert len(await runner.store.read_flow_runs()) == 2


# -- /docs -------------------------------------------------------------------------------------


def _assets(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


async def test_docs_load_without_internet(sqlite_settings: Settings) -> None:
    app = await build_server((await served(sqlite_settings))[0])
    async with client(app) as c:
        page = await c.get("/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        assert not re.search(r"(https?:)?//", page.text.replace("/openapi.json", "")), page.text
        assert '"validatorUrl": null' in page.text, "no call to an online validator"
        assets = _assets(page.text)
        assert len(assets) == 3, assets  # script, style, icon
        for url in assets:
            asset = await c.get(url)
            assert asset.status_code == 200 and len(asset.content) > 1000, url
        script = next(url for url in assets if url.endswith(".js"))
        assert "SwaggerUIBundle" in (await c.get(script)).text
        assert (await c.get("/openapi.json")).status_code == 200


async def test_docs_declare_the_bearer_key_and_need_it(sqlite_settings: Settings) -> None:
    open_doc = await _openapi(sqlite_settings)
    scheme = open_doc["components"]["securitySchemes"]["HTTPBearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "security" not in open_doc, "without a key no operation requires one"

    keyed = sqlite_settings.model_copy(update={"api_key": "s3cret"})
    document = await _openapi(keyed)
    assert document["components"]["securitySchemes"]["HTTPBearer"] == scheme
    assert document["security"] == [{"HTTPBearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []
    app = await build_server((await served(keyed))[0])
    async with client(app) as c:
        assert (await c.get("/docs")).status_code == 401
        assert (await c.get("/docs/assets/swagger-ui.css")).status_code == 401
    async with client(app, Authorization="Bearer s3cret") as c:
        assert (await c.get("/docs")).status_code == 200
        assert (await c.get("/docs/assets/swagger-ui.css")).status_code == 200


async def _openapi(settings: Settings) -> Any:
    app = await build_server((await served(settings))[0])
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    async with client(app, **headers) as c:
        response = await c.get("/openapi.json")
    assert response.status_code == 200
    return response.json()

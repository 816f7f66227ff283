"""The runner webserver end to end: real uvicorn on a free 127.0.0.1 port, real HTTP.

Also fuzzes every route from the app's own OpenAPI document with schemathesis
(bounded, deterministic examples): no input may produce a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headrace.exceptions import ConfigurationError, RunnerUnreachable
from headrace.runner import Runner
from headrace.runner.server import serve_in_loop, start_webserver
from headrace.settings import Settings
from headrace.states import StateType
from headrace.submission import submit_to_runner, wait_for_submitted_runs
from tests.flows import basic, nested
from tests.helpers import eventually, free_port

pytestmark = pytest.mark.timeout(90)

FUZZ_EXAMPLES = 20
FUZZ_MAX_WAIT_SECONDS = 1.0


def web_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path / "home",
        "database_url": f"sqlite:///{tmp_path / 'e2e.db'}",
        "runner_server_host": "127.0.0.1",
        "runner_server_port": free_port(),
        **overrides,
    }
    return Settings(**values)


def web_runner(settings: Settings) -> Runner:
    return Runner(
        settings=settings,
        webserver=True,
        query_seconds=0.2,
        handle_signals=False,
        kill_grace_seconds=1.0,
    )


def base_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.runner_server_port}"


async def _refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            await client.get(f"{url}/health", timeout=1)
    except httpx.TransportError:
        return True
    return False


@contextlib.asynccontextmanager
async def started(runner: Runner) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(runner.start())
    try:
        async with httpx.AsyncClient(base_url=base_url(runner.settings)) as client:
            await eventually(
                lambda: _health(client, task), lambda status: status == 200, timeout=20
            )
        yield task
    finally:
        await runner.stop()
        await asyncio.wait_for(task, timeout=30)


async def _health(client: httpx.AsyncClient, task: asyncio.Task[None]) -> int:
    if task.done():
        task.result()
    try:
        return (await client.get("/health")).status_code
    except httpx.TransportError:
        return 0


async def test_runner_with_webserver_serves_triggers_logs_and_submissions(
    tmp_path: Path,
) -> None:
    settings = web_settings(tmp_path)
    runner = web_runner(settings)
    adder = await runner.add_flow(basic.add, "adder", parameters={"y": 10})
    async with started(runner), httpx.AsyncClient(base_url=base_url(settings)) as client:
        done = await client.post(f"/deployment/{adder}/run?wait=20", json={"x": 1})
        assert done.status_code == 200, done.text
        assert done.json()["result"] == 11
        created = await client.post(f"/deployment/{adder}/run", json={"x": 5})
        run_id = created.json()["flow_run_id"]
        async with client.stream(
            "GET", f"/flow_runs/{run_id}/logs", params={"follow": "true"}, timeout=20
        ) as stream:
            events = [line async for line in stream.aiter_lines()]
        assert "event: end" in events
        assert any("adding 5 and 10" in line for line in events if line.startswith("data: "))
        runs = await asyncio.to_thread(
            submit_to_runner, basic.add, [{"x": 1}, {"x": 2}], settings=settings
        )
        finished = await asyncio.to_thread(
            wait_for_submitted_runs, runs, 30, poll_seconds=0.05, settings=settings
        )
        assert [run.result for run in finished] == [2, 3]
        assert all(run.state.type == StateType.COMPLETED for run in finished)
        assert all(run.runner_name == runner.name for run in finished)


async def test_shutdown_answers_then_stops_the_runner(tmp_path: Path) -> None:
    settings = web_settings(tmp_path, runner_server_enable=True)  # HEADRACE_RUNNER_SERVER_ENABLE
    runner = Runner(settings=settings, query_seconds=0.2, handle_signals=False)
    await runner.add_flow(basic.add)
    task = asyncio.create_task(runner.start())
    url = base_url(settings)
    async with httpx.AsyncClient(base_url=url) as client:
        await eventually(lambda: _health(client, task), lambda status: status == 200)
        response = await client.post("/shutdown")
    assert response.status_code == 200
    assert response.json() == {"message": "OK"}
    await asyncio.wait_for(task, timeout=30)
    assert await _refused(url), "the port is closed once the runner has stopped"


async def test_api_key_over_the_network(tmp_path: Path) -> None:
    settings = web_settings(tmp_path, api_key="t0ps3cret")
    runner = web_runner(settings)
    deployment_id = await runner.add_flow(basic.add)
    async with started(runner), httpx.AsyncClient(base_url=base_url(settings)) as client:
        # No key needed (a loaded machine may see a poll late: 503 then, never 401).
        await eventually(lambda: client.get("/health"), lambda r: r.status_code == 200)
        refused = await client.get("/openapi.json")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        headers = {"Authorization": "Bearer t0ps3cret"}
        assert (await client.get("/openapi.json", headers=headers)).status_code == 200
        run = await asyncio.to_thread(submit_to_runner, basic.add, {"x": 1}, settings=settings)
        assert run.flow_name == "add"
        big = b'{"x": "' + b"a" * (1024 * 1024 + 1) + b'"}'
        too_big = await client.post(
            f"/deployment/{deployment_id}/run", content=big, headers=headers
        )
        assert too_big.status_code == 413


async def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = web_runner(web_settings(tmp_path, runner_server_port=port))
        with pytest.raises(ConfigurationError, match="could not listen"):
            await asyncio.wait_for(runner.start(), timeout=30)


async def test_cancelling_the_embedded_server_closes_its_port(tmp_path: Path) -> None:
    settings = web_settings(tmp_path)
    runner = web_runner(settings)
    runner.last_polled = None
    task = await serve_in_loop(runner)
    url = base_url(settings)
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/health")).status_code == 503, "never polled"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=15)
    assert await _refused(url)


def test_start_webserver_blocks_until_shutdown(tmp_path: Path) -> None:
    settings = web_settings(tmp_path)
    runner = web_runner(settings)
    thread = threading.Thread(target=start_webserver, args=(runner, "error"), daemon=True)
    thread.start()
    url = base_url(settings)

    def answer() -> int:
        for _ in range(200):
            with contextlib.suppress(httpx.TransportError):
                return httpx.get(f"{url}/health").status_code
            threading.Event().wait(0.05)
        return 0

    assert answer() == 503, "the runner is not polling"
    assert httpx.post(f"{url}/shutdown").status_code == 200
    thread.join(timeout=20)
    assert not thread.is_alive()


STANDALONE = """
import sys
from headrace.runner import Runner
from headrace.runner.server import start_webserver
from headrace.settings import Settings

home, port = sys.argv[1], int(sys.argv[2])
settings = Settings(home=home, runner_server_host="127.0.0.1", runner_server_port=port)
start_webserver(Runner(settings=settings), "error")
print("returned", flush=True)
"""


def test_start_webserver_returns_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", STANDALONE, str(tmp_path / "home"), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(400):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(f"http://127.0.0.1:{port}/health")
                break
            threading.Event().wait(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.strip() == "returned"
    assert "Traceback" not in err


def test_submit_without_a_webserver_says_how_to_start_one(tmp_path: Path) -> None:
    settings = web_settings(tmp_path)
    with pytest.raises(RunnerUnreachable, match="Runner\\(webserver=True\\)"):
        submit_to_runner(basic.add, {"x": 1}, settings=settings)


# -- fuzzing -------------------------------------------------------------------------


@pytest.fixture
def live_runner(tmp_path: Path) -> Iterator[str]:
    """A runner with its webserver in a thread of its own (schemathesis calls are blocking)."""
    settings = web_settings(tmp_path, runner_backlog_limit=40)
    runner = web_runner(settings)
    ready = threading.Event()
    failure: list[BaseException] = []

    async def serve() -> None:
        await runner.add_flow(basic.add, "adder", parameters={"y": 1})
        await runner.add_flow(nested.complex_flow, "complex")
        task = asyncio.create_task(runner.start())
        async with httpx.AsyncClient(base_url=base_url(settings)) as client:
            await eventually(lambda: _health(client, task), lambda status: status == 200)
        ready.set()
        await task

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            failure.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="fuzzed-runner", daemon=True)
    thread.start()
    assert ready.wait(30) and not failure, failure
    yield base_url(settings)
    runner.execute_in_background(runner.stop).result(timeout=30)
    thread.join(timeout=60)
    assert not failure, failure


def _reused_key(case: Any, response: httpx.Response) -> bool:
    """An ``Idempotency-Key`` the fuzzer sent before with other parameters: a refusal that
    depends on earlier requests, which no request schema can describe."""
    sent = {name.lower() for name in (case.headers or {})}
    return (
        response.status_code == 422
        and "idempotency-key" in sent
        and "was already used with different parameters" in response.text
    )


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fuzzing_from_the_openapi_document_finds_no_server_errors(live_runner: str) -> None:
    """No input gets a 5xx, and every input the document allows is accepted."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import positive_data_acceptance
    from schemathesis.core.failures import FailureGroup
    from schemathesis.generation import GenerationMode

    document = httpx.get(f"{live_runner}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [
        (path, method.upper())
        for path, methods in document["paths"].items()
        for method in methods
        if path != "/shutdown"
    ]
    assert len(operations) >= 10
    server_errors: list[str] = []
    refused_valid: list[str] = []
    checks: list[Any] = []
    statuses: Counter[int] = Counter()
    for path, method in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = schema[path][method].as_strategy(generation_mode=mode)
            # Valid data must be accepted; invalid data must only not break the server.
            checks[:] = [positive_data_acceptance] if mode == GenerationMode.POSITIVE else []

            @given(case=strategy)
            @hypothesis_settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: Any) -> None:
                if isinstance(case.query, dict) and "wait" in case.query:
                    with contextlib.suppress(TypeError, ValueError):
                        wait = float(case.query["wait"])
                        case.query["wait"] = min(wait, FUZZ_MAX_WAIT_SECONDS)
                response = case.call(base_url=live_runner, timeout=30)
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    server_errors.append(
                        f"{case.method} {case.formatted_path} {case.query} {case.body!r}: "
                        f"{response.status_code} {response.text[:200]}"
                    )
                if _reused_key(case, response):
                    return  # the same key with other parameters: 422 by design, not by schema
                try:
                    case.validate_response(response, checks=checks)
                except FailureGroup:
                    refused_valid.append(
                        f"{case.method} {case.formatted_path} {case.headers} {case.body!r}"[:300]
                        + f": {response.status_code} {response.text[:300]}"
                    )

            try:
                call()
            except Unsatisfiable:
                if mode == GenerationMode.POSITIVE:
                    raise  # negative cases do not exist for routes without inputs
    assert server_errors == []
    assert refused_valid == [], "the document allows what the server refuses"
    print(sorted(statuses.items()))
    assert statuses[201] and statuses[200] and statuses[400] and statuses[422], statuses
    assert httpx.get(f"{live_runner}/health").status_code == 200

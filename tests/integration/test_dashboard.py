"""The dashboard's pages in-process: every page renders over the whole database, the run
form validates as the trigger route does, actions, escaping, and the API-key login."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from headrace import new_runs
from headrace.flow_runs import LogRecord
from headrace.runner.server import build_server
from headrace.settings import Settings
from headrace.states import State, StateType, utcnow
from headrace.store.dashboard import RunFilter
from headrace.task_runs import TaskRun
from tests.helpers import running, wait_for_state
from tests.integration.server_app import client, served

pytestmark = pytest.mark.timeout(60)

SCRIPT = "<script>alert(1)</script>"


async def test_every_page_shows_the_database(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        made = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 2})
        run_id = made.json()["flow_run_id"]
        failed = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": "two"})
        assert failed.status_code == 400
        redirect = await c.get("/")
        assert redirect.status_code == 307 and redirect.headers["location"] == "/ui/"
        overview = await c.get("/ui/")
        assert overview.status_code == 200
        assert runner.name in overview.text and "<svg" in overview.text
        deployments = (await c.get("/ui/deployments")).text
        assert "add/adder" in deployments and runner.name in deployments
        page = (await c.get(f"/ui/deployments/{ids['adder']}")).text
        assert 'name="x"' in page and 'value="10"' in page  # y's default prefilled
        runs = (await c.get("/ui/runs", params={"state": "COMPLETED"})).text
        assert run_id in runs
        assert run_id not in (await c.get("/ui/runs", params={"state": "FAILED"})).text
        older = await c.get("/ui/runs", params={"page": 2, "older": f"2000-01-01T00:00|{run_id}"})
        assert older.status_code == 200 and "No runs." in older.text
        one = (await c.get(f"/ui/runs/{run_id}")).text
        assert "Completed" in one and "12" in one and runner.name in one
        assert runner.name in (await c.get("/ui/runners")).text


async def test_the_run_form_validates_as_the_trigger_route(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        page = (await c.get(f"/ui/deployments/{ids['complex']}")).text
        assert "<fieldset" in page and 'name="shape.name"' in page and 'name="scale"' in page
        bad = await c.post(
            f"/ui/deployments/{ids['complex']}/run",
            content="shape.name=sq&shape.points=%5B%7B%22x%22%3A%22a%22%2C%22y%22%3A2%7D%5D&scale=2",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert bad.status_code == 400
        assert 'id="p-shape-points-error"' in bad.text
        not_number = await c.post(
            f"/ui/deployments/{ids['adder']}/run",
            content="x=abc&y=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert not_number.status_code == 400 and "is not a whole number" in not_number.text
        good = await c.post(
            f"/ui/deployments/{ids['adder']}/run",
            content="x=3&y=4",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert good.status_code == 303
        run_id = good.headers["location"].rsplit("/", 1)[-1]
        run = await runner.store.read_flow_run(UUID(run_id))
        assert run.parameters == {"x": 3, "y": 4}
        cancelled = await c.post(f"/ui/runs/{run_id}/cancel")
        assert cancelled.status_code == 303
        assert (await runner.store.read_flow_run(run.id)).state.type == StateType.CANCELLED
        again = await c.post(f"/ui/runs/{run_id}/retry")
        assert again.status_code == 303
        assert again.headers["location"] != f"/ui/runs/{run_id}"
        paused = await c.post(f"/ui/deployments/{ids['adder']}/pause")
        assert paused.status_code == 303
        assert (await runner.store.read_deployment(ids["adder"])).paused
        foreign = await c.post(
            f"/ui/deployments/{ids['adder']}/resume", headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
        assert (await runner.store.read_deployment(ids["adder"])).paused


async def test_text_from_runs_is_escaped(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    deployment = await runner.store.read_deployment(ids["adder"])
    new = new_runs.for_deployment(deployment, {"x": 1}).model_copy(update={"name": SCRIPT})
    run, _ = await runner.store.create_flow_run(new)
    await runner.store.write_logs(
        [LogRecord(flow_run_id=run.id, level=20, message=SCRIPT, timestamp=utcnow())]
    )
    async with client(app) as c:
        for path in (f"/ui/runs/{run.id}", "/ui/runs", "/ui/"):
            text = (await c.get(path)).text
            assert SCRIPT not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in (await c.get(f"/ui/runs/{run.id}")).text


async def test_with_a_key_the_pages_need_the_login(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    settings = Settings(
        home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'k.db'}", api_key="s3cret"
    )
    runner, _ = await served(settings)
    app = await build_server(runner)
    async with client(app) as c:
        sent = await c.get("/ui/runs")
        assert sent.status_code == 303 and sent.headers["location"].startswith("/ui/login")
        assert (await c.get("/ui/events")).status_code == 303
        form = await c.get("/ui/login")
        assert form.status_code == 200 and 'type="password"' in form.text
        assert (await c.get("/ui/static/style.css")).status_code == 200
        wrong = await c.post(
            "/ui/login",
            content="key=nope&next=/ui/runs",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert wrong.status_code == 401
        right = await c.post(
            "/ui/login",
            content="key=s3cret&next=/ui/runs",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert right.status_code == 303 and right.headers["location"] == "/ui/runs"
        cookie = right.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = await c.get("/ui/runs")
        assert page.status_code == 200 and "Log out" in page.text
        assert (await c.get("/flow_runs")).status_code == 401  # the cookie opens the pages only
        out = await c.post("/ui/logout")
        assert out.status_code == 303
        assert (await c.get("/ui/runs")).status_code == 303  # to the login form again


async def test_a_runs_logs_stream_to_its_end(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    async with running(runner), client(app) as c:
        made = await c.post(f"/deployment/{ids['adder']}/run?wait=20", json={"x": 1})
        run_id = made.json()["flow_run_id"]
        await wait_for_state(runner.store, UUID(run_id))
        async with c.stream("GET", f"/ui/runs/{run_id}/logs") as stream:
            text = "".join([chunk async for chunk in stream.aiter_text()])
        assert "adding 1 and 10" in text
        assert text.rstrip().splitlines()[-2] == "event: end"
        resumed = await c.get(f"/ui/runs/{run_id}/logs", headers={"Last-Event-ID": "999999"})
        assert "adding" not in resumed.text and "event: end" in resumed.text


async def test_an_unknown_run_is_a_page_saying_so(sqlite_settings: Settings) -> None:
    runner, _ = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        missing = await c.get(f"/ui/runs/{UUID(int=7)}")
        assert missing.status_code == 404 and "Not found" in missing.text
        assert missing.headers["content-type"].startswith("text/html")
        assert (await c.get(f"/flow_runs/{UUID(int=7)}")).json()["message"].startswith("No flow")


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_the_run_form_refuses_what_the_trigger_route_refuses(
    sqlite_settings: Settings,
) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    async with client(app) as c:
        for number in ("1e999", "NaN", "-inf"):
            sent = await c.post(
                f"/ui/deployments/{ids['toucher']}/run",
                content=f"t0=1&out=x&sleep={number}",
                headers=FORM,
            )
            assert sent.status_code == 400
            assert 'id="p-sleep-error"' in sent.text and "must be finite" in sent.text
        nested = await c.post(
            f"/ui/deployments/{ids['complex']}/run",
            content="shape.name=sq&shape.points=%5B%7B%22x%22%3ANaN%2C%22y%22%3A2%7D%5D",
            headers=FORM,
        )
        assert nested.status_code == 400 and 'id="p-shape-points-error"' in nested.text
        as_json = await c.post(f"/ui/deployments/{ids['adder']}/run", json={"x": 1})
        assert as_json.status_code == 415
        assert "application/x-www-form-urlencoded" in as_json.json()["message"]
        assert await runner.store.read_run_page(RunFilter(), limit=10) == []


async def test_bad_filters_and_addresses_say_so(sqlite_settings: Settings) -> None:
    runner, ids = await served(sqlite_settings)
    app = await build_server(runner)
    run, _ = await runner.store.create_flow_run(
        new_runs.for_deployment(await runner.store.read_deployment(ids["adder"]), {"x": 1})
    )
    async with client(app) as c:
        for after in ("xx", "2026-02-30T00:00"):
            bad = await c.get("/ui/runs", params={"after": after, "before": "2000-01-01T00:00"})
            assert bad.status_code == 400 and 'id="f-after-error"' in bad.text
            assert f"{after!r} is not a date and time" in bad.text.replace("&#39;", "'")
            assert 'id="f-before-error"' not in bad.text and str(run.id) not in bad.text
        logs = await c.get(f"/ui/runs/{run.id}/logs", headers={"Last-Event-ID": "abc"})
        assert logs.status_code == 400 and "Last-Event-ID 'abc'" in logs.json()["message"]
        for path in ("/ui/runs/nope", "/ui/deployments/nope", "/ui/runs/nope/logs"):
            missing = await c.get(path)
            assert missing.status_code == 404 and "Not found" in missing.text
            assert missing.headers["content-type"].startswith("text/html")
        assert (await c.get("/flow_runs/nope")).status_code == 422  # the API's answer stays


async def test_a_runs_page_lists_its_task_runs(settings: Settings) -> None:
    runner, ids = await served(settings)
    app = await build_server(runner)
    deployment = await runner.store.read_deployment(ids["adder"])
    run, _ = await runner.store.create_flow_run(new_runs.for_deployment(deployment, {"x": 1}))
    now = utcnow()
    failed = State(type=StateType.FAILED, message=f"fetch raised {SCRIPT}")
    await runner.store.write_task_runs(
        [
            TaskRun(
                id=uuid4(),
                flow_run_id=run.id,
                name="fetch-0",
                task_name="fetch",
                state=failed,
                run_count=3,
                start_time=now,
                end_time=now,
            ),
            TaskRun(
                id=uuid4(),
                flow_run_id=run.id,
                name="score-1",
                task_name="score",
                state=State(type=StateType.COMPLETED),
                run_count=1,
                start_time=now,
                end_time=now,
            ),
        ]
    )
    async with client(app) as c:
        page = (await c.get(f"/ui/runs/{run.id}")).text
        bare = (await c.get(f"/ui/runs/{ids['adder']}")).status_code
    assert "Task runs" in page
    assert "fetch-0" in page and "score-1" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and SCRIPT not in page
    assert bare == 404

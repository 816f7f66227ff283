"""A deployment's webhooks, delivered to a real receiver on 127.0.0.1, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
from pathlib import Path
from uuid import uuid4

import pytest

from headrace import Notify
from headrace.client import get_client
from headrace.notifications import SIGNATURE_HEADER, TIMESTAMP_HEADER
from headrace.runner.server import build_server
from headrace.runner.webhooks import GAVE_UP
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.receiver import receiving
from tests.integration.server_app import client as app_client
from tests.integration.test_outcome_durability import markers, runner_process, trigger_touch

pytestmark = pytest.mark.timeout(90)

SECRET = "s3cret"


def quick(settings: Settings, **more: object) -> Settings:
    return settings.model_copy(update={"webhook_retry_seconds": 0.05, **more})


async def test_a_failed_run_is_posted_signed_and_a_completed_one_is_not(
    settings: Settings,
) -> None:
    settings = quick(settings)
    with receiving() as receiver:
        runner = make_runner(settings)
        notify = [Notify(url=receiver.url, secret=SECRET)]
        add_id = await runner.add_flow(basic.add, notify=notify)
        fail_id = await runner.add_flow(basic.fail, notify=notify)
        app = await build_server(runner)
        async with running(runner), get_client(settings) as client, app_client(app) as web:
            completed = await client.create_flow_run_from_deployment(add_id, {"x": 1})
            assert (await wait_for_state(client.store, completed.id)).state.type == "COMPLETED"
            failed = await client.create_flow_run_from_deployment(fail_id)
            assert (await wait_for_state(client.store, failed.id)).state.type == "FAILED"
            deliveries = await eventually(
                lambda: client.store.read_deliveries(failed.id), bool, what="the delivery"
            )
            shown = (await web.get(f"/flow_runs/{failed.id}/notifications")).json()
            as_read = (await web.get(f"/flow_runs/{failed.id}")).json()
            assert (await web.get(f"/flow_runs/{completed.id}/notifications")).json() == []
            assert (await web.get(f"/flow_runs/{uuid4()}/notifications")).status_code == 404
            assert await client.read_notification_deliveries(failed.id) == deliveries
        [post] = receiver.seen()  # the completed run was never posted
        timestamp = post.headers[TIMESTAMP_HEADER]
        mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + post.body, hashlib.sha256)
        assert post.headers[SIGNATURE_HEADER] == f"sha256={mac.hexdigest()}"
        assert post.headers["X-Headrace-Event"] == "flow_run.failed"
        payload = json.loads(post.body)
        assert payload.pop("event") == "flow_run.failed"
        assert payload == as_read  # the run as GET /flow_runs/{id} reads it
        assert payload["state"]["type"] == "FAILED"
        assert [d.attempt for d in deliveries] == [1]
        assert (deliveries[0].status_code, deliveries[0].delivered) == (200, True)
        assert shown == [d.model_dump(mode="json") for d in deliveries]
        assert shown[0]["url"] == receiver.url and shown[0]["event"] == "flow_run.failed"


async def test_a_5xx_is_tried_again_and_every_attempt_is_recorded(settings: Settings) -> None:
    settings = quick(settings)
    with receiving(answers=[500, 503]) as receiver:
        runner = make_runner(settings)
        notify = [{"url": receiver.url, "states": ["completed"]}]
        add_id = await runner.add_flow(basic.add, notify=notify)
        async with running(runner), get_client(settings) as client:
            run = await client.create_flow_run_from_deployment(add_id, {"x": 1})
            await wait_for_state(client.store, run.id)
            deliveries = await eventually(
                lambda: client.store.read_deliveries(run.id),
                lambda found: any(d.delivered for d in found),
                what="the delivery to succeed",
            )
        assert [(d.attempt, d.status_code, d.delivered) for d in deliveries] == [
            (1, 500, False),
            (2, 503, False),
            (3, 200, True),
        ]
        posts = receiver.seen()
        assert len(posts) == 3
        assert len({p.headers["X-Headrace-Delivery"] for p in posts}) == 1  # one delivery
        assert {p.body for p in posts} == {posts[0].body}
        assert SIGNATURE_HEADER not in posts[0].headers  # no secret, no signature


async def test_a_receiver_that_never_answers_never_delays_the_run(
    sqlite_settings: Settings,
) -> None:
    settings = quick(sqlite_settings, webhook_timeout_seconds=60, runner_shutdown_grace_seconds=0.5)
    with socket.socket() as silent:  # listens, never accepts: a POST waits for ever
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        runner = make_runner(settings)
        fail_id = await runner.add_flow(basic.fail, notify=[url])
        async with running(runner), get_client(settings) as client:
            run = await client.create_flow_run_from_deployment(fail_id)
            done = await wait_for_state(client.store, run.id, timeout=15)
            assert done.state.type == StateType.FAILED
            assert await client.store.read_deliveries(run.id) == []  # still trying
        # Stopped while it was still trying: recorded as given up.
        async with get_client(settings) as client:
            [delivery] = await client.store.read_deliveries(run.id)
            assert (delivery.delivered, delivery.error) == (False, GAVE_UP)
            assert (await client.read_flow_run(run.id)).state.type == StateType.FAILED


async def test_a_receiver_that_is_down_is_tried_a_bounded_number_of_times(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    settings = quick(sqlite_settings, webhook_attempts=3)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"  # bound, not listening
        runner = make_runner(settings)
        fail_id = await runner.add_flow(basic.fail, notify=[Notify(url=url)])
        async with running(runner), get_client(settings) as client:
            run = await client.create_flow_run_from_deployment(fail_id)
            await wait_for_state(client.store, run.id)
            deliveries = await eventually(
                lambda: client.store.read_deliveries(run.id),
                lambda found: len(found) >= 3,
                what="three attempts",
            )
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert all(d.status_code is None and d.error and not d.delivered for d in deliveries)


async def test_the_runner_that_recovers_a_dead_runners_run_posts_its_crash(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with runner_process(database_url, settings.home) as process:
        [run_id] = await trigger_touch(settings, out, 1, sleep=60)
        await eventually(
            lambda: asyncio.to_thread(markers, out, "start"), bool, what="the body to start"
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    with receiving() as receiver:
        runner = make_runner(quick(settings))
        notify = [{"url": receiver.url, "states": ["CRASHED"]}]
        await runner.add_flow(basic.touch, "touch", notify=notify)
        async with running(runner), get_client(settings) as client:
            crashed = await wait_for_state(client.store, run_id)
            assert crashed.state.type == StateType.CRASHED
            await eventually(
                lambda: client.store.read_deliveries(run_id), bool, what="the delivery"
            )
        [post] = receiver.seen()
        assert json.loads(post.body)["event"] == "flow_run.crashed"

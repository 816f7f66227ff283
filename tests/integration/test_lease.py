"""A runner cut off from the database stops its runs before another runner starts them again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path

import pytest

from headrace.client import get_client
from headrace.runner import session as session_module
from headrace.settings import Settings
from headrace.states import StateType
from headrace.store import RunnerRecord
from tests.flows import extra
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.dbproxy import proxy_for

pytestmark = pytest.mark.timeout(120)

HEARTBEAT_TIMEOUT = 3.0
PARTITION_SECONDS = 30.0
"""How long the partition may last while the test waits for its effect: the takeover
comes after the heartbeat timeout and its margin (4 s), the rest is what a loaded
2-core machine may add. Nothing here waits it out."""


def attempts(out: Path) -> list[tuple[float, float]]:
    """(first tick, last tick) of each attempt's body, in the order they started."""
    ticks: dict[str, list[float]] = {}
    for line in out.read_text().splitlines() if out.exists() else []:
        pid, _, at = line.partition(" ")
        with contextlib.suppress(ValueError):
            ticks.setdefault(pid, []).append(float(at))
    return sorted((min(times), max(times)) for times in ticks.values())


async def read_attempts(out: Path) -> list[tuple[float, float]]:
    return attempts(out)


@pytest.mark.postgres
@pytest.mark.parametrize("cut", ["refused", "black-holed"])
async def test_a_cut_off_runner_stops_its_run_before_another_starts_its_next_attempt(
    postgres_url: str, tmp_path: Path, cut: str
) -> None:
    out = tmp_path / "ticks"
    tuning = {
        "runner_heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT,
        "runner_lease_margin_seconds": 1.0,
        "runner_poll_frequency": 0.3,
        "runner_shutdown_grace_seconds": 0.0,
    }
    direct = Settings(home=tmp_path / "taker", database_url=postgres_url, **tuning)
    with proxy_for(postgres_url) as proxy:
        cut_off = make_runner(
            direct.model_copy(
                update={"database_url": proxy.url_for(postgres_url), "home": tmp_path / "cut"}
            ),
            name="cut-off",
        )
        taker = make_runner(direct, name="taker")
        deployment_id = await cut_off.add_flow(extra.ticking, "ticking")
        await taker.add_flow(extra.ticking, "ticking")
        async with contextlib.AsyncExitStack() as stack, get_client(direct) as client:
            with pytest.MonkeyPatch.context() as patch:  # a runner on another host
                far = functools.partial(RunnerRecord, host="another-host")
                patch.setattr(session_module, "RunnerRecord", far)
                await stack.enter_async_context(running(cut_off))
            params = {"out": str(out), "seconds": 30.0}
            run = await client.create_flow_run_from_deployment(deployment_id, params)
            await wait_for_state(client.store, run.id, {StateType.RUNNING}, timeout=20)
            await stack.enter_async_context(running(taker))
            cut_off_from_database = proxy.down if cut == "refused" else proxy.black_hole
            cut_off_from_database()
            try:
                both = await eventually(
                    lambda: read_attempts(out),
                    lambda seen: len(seen) == 2,
                    timeout=PARTITION_SECONDS,
                    what="the taker to start the next attempt",
                )
                await asyncio.sleep(0.5)  # the first attempt would tick on meanwhile
            finally:
                proxy.down()  # a black hole's connections end here, as they would time out
                proxy.up()
            (first_start, first_end), (second_start, _) = attempts(out)
            assert first_end < second_start, (
                f"two attempts ran at once for {first_end - second_start:.2f} s"
            )
            assert both[0][0] == first_start
            taken = await client.read_flow_run(run.id)
            assert taken.run_count == 2
            assert taken.state.type in {StateType.PENDING, StateType.RUNNING}


@pytest.mark.postgres
async def test_an_outcome_waiting_past_the_lease_is_recovered_from_the_journal_once(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The runner gives the waiting outcome up with its lease; back, it finds it journaled."""
    out = tmp_path / "markers"
    direct = Settings(
        home=tmp_path / "home",
        database_url=postgres_url,
        runner_heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT,
        runner_poll_frequency=0.3,
    )
    with proxy_for(postgres_url) as proxy:
        runner = make_runner(
            direct.model_copy(update={"database_url": proxy.url_for(postgres_url)})
        )
        deployment_id = await runner.add_flow(extra.touch_until)
        async with running(runner), get_client(direct) as client:
            gate = tmp_path / "gate"
            params = {"t0": 0, "out": str(out), "gate": str(gate)}
            run = await client.create_flow_run_from_deployment(deployment_id, params)
            await wait_for_state(client.store, run.id, {StateType.RUNNING}, timeout=20)
            proxy.down()
            gate.touch()  # the body ends now that its end cannot be stored
            await eventually(
                lambda: asyncio.sleep(0.1, "lost its lease" in caplog.text),
                bool,
                timeout=PARTITION_SECONDS,
                what="the runner to lose its lease",
            )
            proxy.up()
            done = await wait_for_state(client.store, run.id, timeout=20)
    assert done.state.type == StateType.COMPLETED, done.state.message
    assert done.run_count == 1
    assert out.read_text().count("start") == 1, "its body ran again"
    assert "Not recording the end of" in caplog.text
    assert caplog.text.count("Heartbeat stored again") == 1  # not at its start

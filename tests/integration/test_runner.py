"""The runner with real child processes, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from headrace.client import HeadraceClient, get_client
from headrace.exceptions import ObjectNotFound
from headrace.flow_runs import FlowRun
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import basic, extra
from tests.helpers import eventually, make_runner, process_alive, running, wait_for_state

pytestmark = pytest.mark.timeout(90)


async def test_completed_run_records_result_and_logs(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add, "adder", parameters={"y": 10})
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"x": 5})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 15
        assert done.run_count == 1
        assert done.start_time is not None and done.end_time is not None
        assert done.pid is not None
        logs = await client.read_logs(run.id)
        messages = [line.message for line in logs]
        assert "adding 5 and 10" in messages
        assert any(
            "about to return" in m and line.level == 30
            for m, line in zip(messages, logs, strict=True)
        )
        history = [s.type for s in await client.read_state_history(run.id)]
        assert history == [
            StateType.SCHEDULED,
            StateType.PENDING,
            StateType.RUNNING,
            StateType.COMPLETED,
        ]


async def test_async_flow_and_unserialisable_result(settings: Settings) -> None:
    runner = make_runner(settings)
    add_id = await runner.add_flow(basic.async_add)
    obj_id = await runner.add_flow(basic.returns_object)
    async with running(runner), get_client(settings) as client:
        a = await client.create_flow_run_from_deployment(add_id, {"x": 1, "y": 2})
        b = await client.create_flow_run_from_deployment(obj_id)
        assert (await wait_for_state(client.store, a.id)).result == 3
        done = await wait_for_state(client.store, b.id)
        assert done.state.type == StateType.COMPLETED
        assert done.result is None  # never a repr posing as the value
        assert "is not JSON-encodable" in (done.state.message or ""), done.state


async def test_results_messages_and_logs_every_store_can_keep(settings: Settings) -> None:
    """NaN and infinities become null, unpaired surrogates U+FFFD: the same on every store."""
    runner = make_runner(settings)
    awkward_id = await runner.add_flow(extra.awkward_text)
    raising_id = await runner.add_flow(extra.raises_awkward_text)
    async with running(runner), get_client(settings) as client:
        awkward = await client.create_flow_run_from_deployment(awkward_id)
        raising = await client.create_flow_run_from_deployment(raising_id)
        done = await wait_for_state(client.store, awkward.id)
        assert done.state.type == StateType.COMPLETED, done.state
        assert done.result == {"mean": None, "top": None, "text": "a\ufffdb", "ok": "\U0001f600"}
        logs = await client.read_logs(awkward.id)
        assert any(line.message.endswith("lone \ufffd surrogate") for line in logs), logs
        assert "printed \\ud800 surrogate" in [line.message for line in logs]
        failed = await wait_for_state(client.store, raising.id)
        assert failed.state.type == StateType.FAILED
        assert "ValueError: bad \ufffd input" in (failed.state.message or "")


async def test_invalid_parameters_fail_at_once_without_retries(settings: Settings) -> None:
    runner = make_runner(settings)
    unchecked = await runner.add_flow(extra.retried_once, enforce_parameter_schema=False)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(unchecked, {"x": "not a number"})
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.FAILED
    assert "Parameter validation failed" in (done.state.message or "")
    assert done.run_count == 1  # retrying cannot make the parameters valid


async def test_parameters_and_results_read_back_as_written(settings: Settings) -> None:
    """Key order and number forms survive the store, on PostgreSQL as on SQLite."""
    runner = make_runner(settings)
    echo_id = await runner.add_flow(extra.echo)
    sent = {"zebra": 1, "apple": 1e308, "mango": [3, 1, 2], "b": {"y": 1, "x": 2}}
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(echo_id, {"value": sent})
        done = await wait_for_state(client.store, run.id)
    assert done.state.type == StateType.COMPLETED, done.state
    assert list(done.parameters["value"]) == list(sent)
    assert list(done.result) == list(sent) and list(done.result["b"]) == ["y", "x"]
    assert done.result["apple"] == 1e308 and isinstance(done.result["apple"], float)


async def test_failed_run_keeps_the_traceback(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.fail)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"message": "kaput"})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.FAILED
        assert "ValueError: kaput" in (done.state.message or "")
        assert "Traceback" in (done.state.message or "")


@pytest.mark.parametrize(
    ("flow_name", "expected"),
    [("exit_hard", "exited with code 3"), ("kill_self", "SIGKILL")],
)
async def test_crashed_processes_are_explained(
    settings: Settings, flow_name: str, expected: str
) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(getattr(basic, flow_name))
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id)
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.CRASHED
        assert expected in (done.state.message or "")


async def test_import_error_crashes_with_the_cause(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(
        basic.add, "broken", entrypoint="tests.flows.broken:never"
    )
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"x": 1})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.CRASHED
        assert "broken on purpose" in (done.state.message or "")


async def test_timeout_fails_the_run(settings: Settings) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.too_slow)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id)
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.FAILED
        assert "timed out after 0.5 s" in (done.state.message or "")


async def test_retries_make_new_attempts(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.flaky)
    marker = tmp_path / "attempts"
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"marker": str(marker)})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == 3
        assert done.run_count == 3
        names = [s.name for s in await client.read_state_history(run.id)]
        assert names.count("AwaitingRetry") == 2


async def test_cancel_a_running_run_kills_its_process_tree(
    settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.with_grandchild)
    pidfile = tmp_path / "pids"
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"pidfile": str(pidfile)})
        await wait_for_state(client.store, run.id, {StateType.RUNNING})
        await eventually(
            lambda: _read(pidfile), lambda text: " " in text, what="the flow to start a child"
        )
        pids = [int(p) for p in pidfile.read_text().split()]
        cancelling = await client.cancel_flow_run(run.id)
        assert cancelling.state.type == StateType.CANCELLING
        done = await wait_for_state(client.store, run.id, timeout=30)
        assert done.state.type == StateType.CANCELLED
        for pid in pids:
            await eventually(
                lambda pid=pid: process_alive(pid),
                lambda alive: not alive,
                what=f"pid {pid} to die",
            )


async def test_cancelled_scheduled_run_never_starts(settings: Settings, tmp_path: Path) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.touch)
    out = tmp_path / "touched"
    async with get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(
            deployment_id, {"t0": 0, "out": str(out)}
        )
        assert (await client.cancel_flow_run(run.id)).state.type == StateType.CANCELLED
        marker = await client.create_flow_run_from_deployment(
            deployment_id, {"t0": 1, "out": str(out)}
        )
    async with running(runner), get_client(settings) as client:
        await wait_for_state(client.store, marker.id)
    assert out.read_text().count("start") == 1
    assert "start 1" in out.read_text()


async def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


SLOW_POLLS: dict[str, object] = {
    "query_seconds": 600,
    "dispatch_seconds": 600.0,
    "cancel_check_seconds": 600.0,
}
"""The runner's fallback polls wait longer than the test's own timeout: only a database
notification can be in time, however loaded the machine."""


async def test_runs_queued_by_another_process_start_at_once(
    settings: Settings, database_url: str
) -> None:
    from headrace.flow_runs import NewFlowRun
    from headrace.store import SQLStore

    runner = make_runner(settings, **SLOW_POLLS)
    deployment_id = await runner.add_flow(basic.add)
    async with running(runner), get_client(settings) as client:
        with contextlib.closing(SQLStore(database_url)) as other:  # no in-process wake-up
            run, _ = other.create_flow_run(
                NewFlowRun(flow_name="add", deployment_id=deployment_id, parameters={"x": 1})
            )
        done = await wait_for_state(client.store, run.id, timeout=30)
        assert done.state.type == StateType.COMPLETED


async def test_a_run_is_claimed_once_and_its_end_claims_nothing_when_none_wait(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every claim is a write transaction: a run's end claims only if runs were left queued."""
    from headrace.store import changes

    monkeypatch.setattr(changes, "SQLITE_WATCH_SECONDS", 60.0)  # only in-process wake-ups
    runner = make_runner(settings, **SLOW_POLLS, limit=4)
    deployment_id = await runner.add_flow(basic.add)
    claims: list[int] = []
    claim_runs = runner.store.claim_runs

    async def counted(**options: Any) -> list[FlowRun]:
        claimed = await claim_runs(**options)
        claims.append(len(claimed))
        return claimed

    async def one_run(client: HeadraceClient, x: int) -> None:
        run = await client.create_flow_run_from_deployment(deployment_id, {"x": x})
        done = await wait_for_state(client.store, run.id, timeout=30)
        assert done.state.type == StateType.COMPLETED

    async with running(runner), get_client(settings) as client:
        await one_run(client, 0)  # past start-up, where PostgreSQL's first LISTEN wakes a claim
        monkeypatch.setattr(runner.store, "claim_runs", counted)
        for x in range(1, 6):
            await one_run(client, x)
    assert claims == [1] * 5


async def test_a_cancel_from_another_process_reaches_the_runner_at_once(
    settings: Settings, database_url: str
) -> None:
    from headrace.store import SQLStore

    runner = make_runner(settings, **SLOW_POLLS)
    deployment_id = await runner.add_flow(basic.sleepy)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"seconds": 60})
        await wait_for_state(client.store, run.id, {StateType.RUNNING})
        with contextlib.closing(SQLStore(database_url)) as other:
            assert other.request_cancellation(run.id).state.type == StateType.CANCELLING
        done = await wait_for_state(client.store, run.id, timeout=30)
        assert done.state.type == StateType.CANCELLED


async def test_client_created_ad_hoc_runs_reach_the_named_runner_or_wait_to_be_executed(
    settings: Settings,
) -> None:
    runner = Runner(settings=settings, query_seconds=600, handle_signals=False)
    await runner.add_flow(basic.fail)  # a deployment to serve; the ad-hoc runs are of another flow
    async with running(runner), get_client(settings) as client:
        waiting = await client.create_flow_run(basic.add, {"x": 5})
        named = await client.create_flow_run(basic.add, {"x": 2}, runner_name=runner.name)
        done = await wait_for_state(client.store, named.id, timeout=30)
        assert done.state.type == StateType.COMPLETED
        assert done.result == 3 and done.deployment_id is None
        # The serving runner claimed the later run, never the one addressed to nobody.
        assert (await client.read_flow_run(waiting.id)).state.type == StateType.SCHEDULED
        other = Runner(settings=settings, handle_signals=False)
        executed = await other.execute_flow_run(waiting.id)
        assert executed.state.type == StateType.COMPLETED and executed.result == 6
        with pytest.raises(ObjectNotFound, match="nobody"):
            await client.create_flow_run(basic.add, {"x": 1}, runner_name="nobody")


async def test_a_dead_fork_server_crashes_its_runs_and_is_replaced(
    settings: Settings, tmp_path: Path
) -> None:
    import signal as signals

    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.touch, "slow")
    quick_id = await runner.add_flow(basic.add, "quick")
    async with running(runner), get_client(settings) as client:
        slow = await client.create_flow_run_from_deployment(
            deployment_id, {"t0": 0, "out": str(tmp_path / "m"), "sleep": 30}
        )
        await wait_for_state(client.store, slow.id, {StateType.RUNNING})
        server = runner._starter._process  # type: ignore[union-attr]
        assert server is not None
        os.kill(server.pid, signals.SIGKILL)
        lost = await wait_for_state(client.store, slow.id, timeout=30)
        assert lost.state.type == StateType.CRASHED
        assert "fork server" in (lost.state.message or "")
        pid = lost.pid
        assert pid is not None
        await eventually(lambda: process_alive(pid), lambda alive: not alive, what="the run to die")
        after = await client.create_flow_run_from_deployment(quick_id, {"x": 1})
        done = await wait_for_state(client.store, after.id, timeout=20)
        assert done.state.type == StateType.COMPLETED, done.state.message


def fork_servers() -> list[int]:
    """Live fork servers started by this process."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    return [
        int(pid)
        for pid in children
        if b"headrace forkserver" in _read_or_empty(Path(f"/proc/{pid}/cmdline"))
        and "State:\tZ" not in _read_or_empty(Path(f"/proc/{pid}/status")).decode()
    ]


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


async def test_runs_started_together_after_the_fork_server_died_share_one_new_one(
    settings: Settings, tmp_path: Path
) -> None:
    import signal as signals

    runner = make_runner(settings, limit=3)
    slow_id = await runner.add_flow(basic.touch, "slow")
    quick_id = await runner.add_flow(basic.add, "quick")
    async with running(runner), get_client(settings) as client:
        slow = [
            await client.create_flow_run_from_deployment(
                slow_id, {"t0": 0, "out": str(tmp_path / f"m{i}"), "sleep": 30}
            )
            for i in range(3)
        ]
        for run in slow:
            await wait_for_state(client.store, run.id, {StateType.RUNNING})
        quick = [await client.create_flow_run_from_deployment(quick_id, {"x": i}) for i in range(6)]
        (server,) = fork_servers()
        os.kill(server, signals.SIGKILL)  # three slots free at once: three starts need a server
        for run in quick:
            done = await wait_for_state(client.store, run.id, timeout=20)
            assert done.state.type == StateType.COMPLETED, done.state.message
        assert len(fork_servers()) == 1
    assert fork_servers() == []


async def test_a_runner_whose_run_was_taken_over_stops_it_and_records_nothing(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    """Presumed dead (a long pause, say), it must not run one run twice at once."""
    from headrace.states import State
    from headrace.store import RunnerRecord, SQLStore
    from headrace.store.records import Attempt

    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.touch)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(
            deployment_id, {"t0": 0, "out": str(tmp_path / "m"), "sleep": 30}
        )
        first = await wait_for_state(client.store, run.id, {StateType.RUNNING})
        assert first.pid is not None
        other = RunnerRecord(name="survivor", host="another-machine")  # alive elsewhere
        with contextlib.closing(SQLStore(database_url)) as survivor:
            survivor.register_runner(other)
            survivor.set_state(run.id, State(type=StateType.SCHEDULED, name="Rescheduled"))
            (taken,) = survivor.claim_runs(deployment_ids=[deployment_id], runner=other, limit=1)
            survivor.set_state(run.id, State(type=StateType.RUNNING), pid=os.getpid())
        pid = first.pid
        await eventually(lambda: process_alive(pid), lambda alive: not alive, what="a stop")
        await eventually(lambda: _idle(runner), bool, what="the runner to let the run go")
        current = await client.read_flow_run(run.id)
        assert current.state.type == StateType.RUNNING  # the survivor's attempt, untouched
        assert (
            (current.runner_id, current.run_count)
            == (other.id, taken.run_count)
            == (
                other.id,
                2,
            )
        )
        with contextlib.closing(SQLStore(database_url)) as survivor:
            survivor.set_state(
                run.id, State(type=StateType.COMPLETED), attempt=Attempt(other.id, 2)
            )
        history = [state.type for state in await client.read_state_history(run.id)]
    assert history.count(StateType.COMPLETED) == 1 and StateType.CRASHED not in history


async def test_heartbeats_keep_up_with_the_timeout_however_rarely_it_polls(
    settings: Settings, database_url: str
) -> None:
    import sqlalchemy as sa

    from headrace.store import SQLStore
    from headrace.store.tables import runners

    quick = settings.model_copy(update={"runner_heartbeat_timeout_seconds": 1.5})
    runner = make_runner(quick, query_seconds=600)
    await runner.add_flow(basic.add)
    beats: set[object] = set()
    with contextlib.closing(SQLStore(database_url)) as other:
        async with running(runner):

            async def heartbeats() -> int:
                with other.engine.connect() as conn:
                    query = sa.select(runners.c.heartbeat).where(runners.c.id == runner.record.id)
                    beats.add(conn.execute(query).scalar())
                return len(beats)

            # Polls come ten minutes apart; the heartbeat beats every half second on its own
            # timer. Four beats take two seconds; the rest is what a loaded machine adds.
            await eventually(heartbeats, lambda n: n >= 4, timeout=20, what="heartbeats")


async def _idle(runner: Runner) -> bool:
    return runner.running_count == 0


async def test_the_fork_server_leaves_sigterm_to_its_runner(settings: Settings) -> None:
    """A SIGTERM to the whole process group must not take the fork server down mid-drain."""
    import signal as signals

    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add)
    async with running(runner), get_client(settings) as client:
        first = await client.create_flow_run_from_deployment(deployment_id, {"x": 1})
        await wait_for_state(client.store, first.id)
        (server,) = fork_servers()
        os.kill(server, signals.SIGTERM)
        second = await client.create_flow_run_from_deployment(deployment_id, {"x": 2})
        done = await wait_for_state(client.store, second.id)
        assert done.state.type == StateType.COMPLETED
        assert fork_servers() == [server]


async def test_recovery_never_takes_a_run_claimed_but_not_yet_launched_for_an_orphan(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(basic.add)
    claim_runs = runner.store.claim_runs
    recoveries: list[asyncio.Task[None]] = []

    async def claim_then_let_recovery_in(**options: Any) -> list[FlowRun]:
        claimed = await claim_runs(**options)
        if claimed and not recoveries:
            assert runner._session is not None
            liveness = runner._session.liveness
            recoveries.append(asyncio.create_task(liveness.recover_orphans()))
            await asyncio.sleep(0.2)  # recovery's turn, between the claim and the launch
        return claimed

    monkeypatch.setattr(runner.store, "claim_runs", claim_then_let_recovery_in)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"x": 1})
        done = await wait_for_state(client.store, run.id)
        await recoveries[0]
        history = [state.type for state in await client.read_state_history(run.id)]
    assert done.state.type == StateType.COMPLETED, done.state
    assert done.run_count == 1
    assert StateType.CRASHED not in history


IMPORT_COUNTING_FLOW = """
import os
from headrace import flow

with open(os.environ["HEADRACE_TEST_IMPORT_MARKER"], "a") as marker:
    marker.write(f"{os.getpid()}\\n")

@flow
def counted() -> int:
    return os.getpid()
"""


@pytest.mark.parametrize("form", ["file", "module"])
async def test_runs_do_not_import_the_flow_again(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """The fork server imports served flows once; a run's process starts with them loaded."""
    from headrace.entrypoints import load_flow_from_entrypoint

    marker = tmp_path / "imports.txt"
    monkeypatch.setenv("HEADRACE_TEST_IMPORT_MARKER", str(marker))
    name = f"counted_{uuid.uuid4().hex[:8]}"  # never already in sys.modules
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "counting.py").write_text(IMPORT_COUNTING_FLOW)
    if form == "module":
        monkeypatch.syspath_prepend(str(tmp_path))
        entrypoint = f"{name}.counting:counted"
    else:
        entrypoint = f"{package / 'counting.py'}:counted"
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(load_flow_from_entrypoint(entrypoint))
    async with running(runner), get_client(settings) as client:
        pids = []
        for _ in range(3):
            run = await client.create_flow_run_from_deployment(deployment_id)
            done = await wait_for_state(client.store, run.id)
            assert done.state.type == StateType.COMPLETED, done.state.message
            pids.append(done.result)
    importers = marker.read_text().split()
    assert str(os.getpid()) in importers
    assert not set(importers) & {str(pid) for pid in pids}, "a run imported its flow again"
    assert len(importers) == 2, importers  # this process and the fork server


@pytest.mark.parametrize("flow_name", ["new_imports", "new_imports_async"])
async def test_a_run_imports_nothing_its_fork_server_had_not(
    settings: Settings, flow_name: str
) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(getattr(basic, flow_name))
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id)
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.COMPLETED, done.state.message
        assert done.result == []

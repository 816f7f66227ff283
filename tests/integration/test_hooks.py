"""A flow's state hooks, with real run processes: which process calls each, and what a
hook that raises costs (nothing but a line in the run's log)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from uuid import UUID

import pytest

from headrace.client import HeadraceClient, get_client
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import hooked
from tests.helpers import eventually, make_runner, running, wait_for_state
from tests.integration.test_runner_logs import json_log

pytestmark = pytest.mark.timeout(90)

BROKEN = "hook broken_hook raised RuntimeError: the hook broke"


def calls(marker: Path, kind: str) -> list[list[str]]:
    """Each call of the hook that writes ``<marker>.<kind>``: state, pid, flow, run name."""
    path = Path(f"{marker}.{kind}")
    return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


async def logged(client: HeadraceClient, run_id: UUID) -> list[str]:
    return [line.message for line in await client.read_logs(run_id)]


async def test_the_runs_process_calls_on_completion_and_on_failure_after_the_body(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(sqlite_settings)
    ids = {
        f: await runner.add_flow(getattr(hooked, f)) for f in ("succeeds", "fails", "fails_twice")
    }
    async with running(runner), get_client(sqlite_settings) as client:
        runs = {
            name: await client.create_flow_run_from_deployment(
                ids[name], {"marker": str(tmp_path / name)}
            )
            for name in ids
        }
        done = {name: await wait_for_state(client.store, run.id) for name, run in runs.items()}
        # The state is the body's, whatever the hooks did.
        assert done["succeeds"].state.type == StateType.COMPLETED
        assert done["succeeds"].result == 42
        assert done["fails"].state.type == StateType.FAILED
        assert "the body failed" in (done["fails"].state.message or "")
        assert done["fails_twice"].state.type == StateType.FAILED
        # Each hook ran once, in the run's own process, after the hook before it raised.
        assert calls(tmp_path / "succeeds", "completion") == [
            ["COMPLETED", str(done["succeeds"].pid), "succeeds", runs["succeeds"].name]
        ]
        assert calls(tmp_path / "fails", "failure") == [
            ["FAILED", str(done["fails"].pid), "fails", runs["fails"].name]
        ]
        assert calls(tmp_path / "succeeds", "failure") == []
        assert calls(tmp_path / "fails", "completion") == []
        # A failure that is retried is no failure yet: on_failure runs after the last attempt.
        assert Path(f"{tmp_path / 'fails_twice'}.attempts").read_text() == "xx"
        assert len(calls(tmp_path / "fails_twice", "failure")) == 1
        for name in ("succeeds", "fails"):
            assert any(BROKEN in line for line in await logged(client, runs[name].id)), name


async def test_the_runner_calls_the_hooks_of_runs_whose_process_was_killed(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    runner = make_runner(sqlite_settings)
    ids = {f: await runner.add_flow(getattr(hooked, f)) for f in ("dies", "sleeps", "times_out")}
    async with running(runner), get_client(sqlite_settings) as client:
        runs = {
            name: await client.create_flow_run_from_deployment(
                ids[name], {"marker": str(tmp_path / name)}
            )
            for name in ids
        }
        await wait_for_state(client.store, runs["sleeps"].id, {StateType.RUNNING})
        await client.cancel_flow_run(runs["sleeps"].id)
        done = {name: await wait_for_state(client.store, run.id) for name, run in runs.items()}
        assert done["dies"].state.type == StateType.CRASHED
        assert done["sleeps"].state.type == StateType.CANCELLED
        assert done["times_out"].state.type == StateType.FAILED
        expected = {"dies": "crashed", "sleeps": "cancellation", "times_out": "failure"}
        for name, kind in expected.items():
            found = await eventually(
                lambda name=name, kind=kind: _calls(tmp_path / name, kind),
                bool,
                what=f"the {kind} hook of {name}",
            )
            # Called by the runner (this process), with the state it recorded.
            state = done[name].state.type.value
            assert found == [[state, str(os.getpid()), name.replace("_", "-"), runs[name].name]]
            lines = await eventually(
                lambda name=name: logged(client, runs[name].id),
                lambda lines: any(BROKEN in line for line in lines),
                what=f"the broken hook of {name} in its log",
            )
            assert any(f"on_{kind} {BROKEN}" in line for line in lines), lines
        assert (await client.read_flow_run(runs["dies"].id)).state.type == StateType.CRASHED
        assert calls(tmp_path / "sleeps", "completion") == calls(tmp_path / "dies", "failure") == []


async def _calls(marker: Path, kind: str) -> list[list[str]]:
    return calls(marker, kind)


async def test_what_a_runner_called_hook_prints_is_the_runs_log_not_bare_output(
    sqlite_settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    runner = make_runner(sqlite_settings)
    deployment_id = await runner.add_flow(hooked.dies_loudly)
    with json_log() as stream:
        async with running(runner), get_client(sqlite_settings) as client:
            run = await client.create_flow_run_from_deployment(deployment_id, {})
            assert (await wait_for_state(client.store, run.id)).state.type == StateType.CRASHED
            lines = await eventually(
                lambda: client.read_logs(run.id),
                lambda lines: len(lines) >= 2,
                what="what the hook printed, in the run's log",
            )
    said = [(line.level, line.message) for line in lines]
    assert said == [(logging.INFO, "the hook saw CRASHED"), (logging.ERROR, "and warns on stderr")]
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    echoed = [r for r in records if r["logger"] == "headrace.flow_runs"]
    assert [r["message"] for r in echoed] == ["the hook saw CRASHED", "and warns on stderr"]
    assert echoed[0]["flow_run_id"] == str(run.id)
    assert echoed[0]["deployment"] == "dies-loudly/dies-loudly"
    bare = capfd.readouterr()
    assert "the hook saw" not in bare.out and "warns on stderr" not in bare.err

"""``headrace run --at/--in/--name/--idempotency-key`` and ``runs ls --since/--until`` with
totals, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import StateType, utcnow
from tests.flows import basic
from tests.integration.test_cli import (
    add_deployment,
    assert_one_error_line,
    env,
    invoke,
    read_run,
    read_runs,
)

pytestmark = pytest.mark.timeout(120)
__all__ = ["env"]


def test_run_in_and_at_create_a_run_scheduled_for_then(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    before = utcnow()
    later = invoke(env, "run", "adder", "-p", "x=1", "--in", "2h", "--name", "backfill")
    assert later.exit_code == 0, later.stderr
    run = read_run(settings, later.stdout.strip())
    assert run.name == "backfill" and run.state.type == StateType.SCHEDULED
    assert run.expected_start_time is not None
    assert timedelta(hours=2) <= run.expected_start_time - before < timedelta(hours=2, minutes=1)
    assert "Created flow run 'backfill' of add/adder, to start at " in later.stderr

    at = invoke(env, "run", "add/adder", "-p", "x=1", "--at", "2099-01-02T03:04:05+00:00")
    assert at.exit_code == 0, at.stderr
    assert read_run(settings, at.stdout.strip()).expected_start_time == datetime(
        2099, 1, 2, 3, 4, 5, tzinfo=UTC
    )


def test_run_times_that_cannot_be_are_usage_errors(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    for args, fragment in [
        (["--in", "soon"], "--in 'soon' is not a duration such as 30s, 10m"),
        (["--at", "2001-01-01T00:00"], "--at '2001-01-01T00:00' is in the past"),
        (["--at", "someday"], "--at 'someday' is neither a time"),
        (["--at", "2099-01-01", "--in", "1h"], "Give --at or --in, not both"),
    ]:
        assert_one_error_line(invoke(env, "run", "adder", "-p", "x=1", *args), fragment, code=2)
    assert read_runs(settings) == []


def test_idempotency_key_gives_back_the_same_run(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    first = invoke(env, "run", "adder", "-p", "x=1", "--idempotency-key", "nightly-1")
    again = invoke(env, "run", "adder", "-p", "x=1", "--idempotency-key", "nightly-1")
    assert first.exit_code == again.exit_code == 0, again.stderr
    assert first.stdout == again.stdout
    assert again.stderr.startswith("Found (by its idempotency key) flow run")
    other = invoke(env, "run", "adder", "-p", "x=2", "--idempotency-key", "nightly-1")
    assert_one_error_line(other, "nightly-1")
    assert len(read_runs(settings)) == 1


def test_runs_ls_filters_by_creation_time_and_counts_every_match(
    settings: Settings, env: dict[str, str | None]
) -> None:
    add_deployment(settings, basic.add, "adder")
    for x in range(3):
        assert invoke(env, "run", "adder", "-p", f"x={x}").exit_code == 0
    runs = read_runs(settings)

    async def cancel_one() -> None:
        async with get_client(settings) as client:
            await client.cancel_flow_run(runs[0].id)

    asyncio.run(cancel_one())

    listed = invoke(env, "runs", "ls", "--limit", "2")
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.rstrip().splitlines()[-1] == (
        "3 runs: 2 scheduled, 1 cancelled (the newest 2 shown; --limit shows more)"
    )
    assert (
        invoke(env, "runs", "ls", "--since", "1h")
        .stdout.rstrip()
        .endswith("3 runs: 2 scheduled, 1 cancelled")
    )
    oldest = runs[-1].created + timedelta(microseconds=1)
    until = invoke(env, "runs", "ls", "--until", oldest.isoformat(), "--json")
    assert [r["id"] for r in json.loads(until.stdout)] == [str(runs[-1].id)]
    empty = invoke(env, "runs", "ls", "--until", "1h")
    assert empty.exit_code == 0 and "No flow runs match." in empty.stderr
    assert_one_error_line(invoke(env, "runs", "ls", "--since", "yesterday-ish"), "--since", code=2)

"""Log limits with real runs: a long line is stored once, cut; a run's log stops at its cap."""

from __future__ import annotations

import pytest

from headrace.client import get_client
from headrace.settings import Settings
from headrace.states import StateType
from tests.flows import noisy
from tests.helpers import make_runner, running, wait_for_state

pytestmark = pytest.mark.timeout(90)


async def test_a_200000_character_line_is_stored_once_cut_to_the_line_limit(
    settings: Settings,
) -> None:
    runner = make_runner(settings)
    deployment_id = await runner.add_flow(noisy.noisy)
    async with running(runner), get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"long_line": 200_000})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.COMPLETED, done.state
        messages = [line.message for line in await client.read_logs(run.id)]
    printed = [m for m in messages if m.startswith("L")]
    assert printed == ["L" * 16_384 + "… [cut: 183,616 more characters]"]
    logged = [m for m in messages if "WWW" in m]  # a logging record: "tests.flows.noisy - W…"
    prefix = "tests.flows.noisy - "
    assert logged == [
        prefix
        + "W" * (16_384 - len(prefix))
        + f"… [cut: {183_616 + len(prefix):,} more characters]"
    ]


async def test_past_the_run_limit_nothing_more_is_stored_and_one_line_counts_the_rest(
    settings: Settings,
) -> None:
    limited = settings.model_copy(update={"run_log_limit_bytes": 100_000})
    runner = make_runner(limited)
    deployment_id = await runner.add_flow(noisy.noisy)
    async with running(runner), get_client(limited) as client:
        run = await client.create_flow_run_from_deployment(deployment_id, {"lines": 5_000})
        done = await wait_for_state(client.store, run.id)
        assert done.state.type == StateType.COMPLETED, done.state
        logs = await client.read_logs(run.id)
        logs += await client.read_logs(run.id, after_id=logs[-1].id)
    printed = [line.message for line in logs if line.message[:8].isdigit()]
    assert len(printed) == 1_000  # 1,000 lines of 100 bytes fill the 100,000 bytes
    assert printed[-1].startswith("00000999")
    assert logs[-1].message == (
        "400,000 bytes of log dropped (limit 100,000 bytes per run: HEADRACE_RUN_LOG_LIMIT_BYTES)"
    )
    assert logs[-1].level == 30
    assert sum("dropped" in line.message for line in logs) == 1

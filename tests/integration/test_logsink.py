"""Run logs on their way to the store: a line never lands ahead of its run's RUNNING."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from headrace.flow_runs import LogRecord
from headrace.runner.logsink import LogSink
from headrace.states import State, StateType
from headrace.store import AsyncStore, RunnerRecord, SQLStore
from tests.integration.test_store import queue_runs, spec


async def test_a_line_is_stored_only_after_its_runs_running_state(
    store: SQLStore, async_store: AsyncStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployment = store.upsert_deployment(spec())
    (run_id,) = queue_runs(store, deployment.id, 1)
    store.claim_runs(deployment_ids=[deployment.id], runner=RunnerRecord(name="r"), limit=1)
    states_seen_by_log_writes: list[StateType] = []
    write_logs = store.write_logs

    def observed(records: Sequence[LogRecord]) -> None:
        states_seen_by_log_writes.append(store.read_flow_run(run_id).state.type)
        write_logs(records)

    monkeypatch.setattr(store, "write_logs", observed)
    sink = LogSink(async_store)

    # As the executor does at a run's first line: queue RUNNING, then the line, then flush.
    running = async_store.queue_state(
        run_id, State(type=StateType.RUNNING), expected=[StateType.PENDING]
    )
    sink.add(run_id, "brave-otter", 20, "first line", time.time(), after=running)
    await sink.flush()

    assert (await running).state.type == StateType.RUNNING
    assert states_seen_by_log_writes == [StateType.RUNNING]
    assert [line.message for line in store.read_logs(run_id)] == ["first line"]

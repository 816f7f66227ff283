"""Text no store can keep (NUL, unpaired surrogates) is repaired alike on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest

from headrace.flow_runs import LogRecord, NewFlowRun
from headrace.states import State, StateType, utcnow
from headrace.store import RunnerRecord, SQLStore
from tests.integration.test_store import spec

BAD = "a\x00b\ud800c"
REPAIRED = "a\ufffdb\ufffdc"
NUL = "a\x00b"
"""Pydantic refuses unpaired surrogates in ``str`` fields: names and messages can hold NUL only."""
NUL_REPAIRED = "a\ufffdb"


def test_names_parameters_messages_and_results_are_repaired(store: SQLStore) -> None:
    deployment = store.upsert_deployment(
        spec(name=NUL, description=NUL, parameters={"p": [BAD, {NUL: BAD}]})
    )
    assert deployment.name == NUL_REPAIRED and deployment.description == NUL_REPAIRED
    assert deployment.parameters == {"p": [REPAIRED, {NUL_REPAIRED: REPAIRED}]}
    new = NewFlowRun(
        flow_name="etl",
        deployment_id=deployment.id,
        name=NUL,
        parameters={"value": BAD},
        state_message=NUL,
    )
    ((run, _),) = store.create_flow_runs([new])
    store.claim_runs(deployment_ids=[deployment.id], runner=RunnerRecord(name=NUL), limit=1)
    store.set_state(run.id, State(type=StateType.RUNNING, message=NUL))
    store.set_state(run.id, State(type=StateType.COMPLETED, message=NUL), result={"r": BAD})

    stored = store.read_flow_run(run.id)
    assert (stored.name, stored.runner_name, stored.state.message) == (NUL_REPAIRED,) * 3
    assert stored.parameters == {"value": REPAIRED}
    assert stored.result == {"r": REPAIRED}
    history = [s.message for s in store.read_state_history(run.id)]
    assert history[-2:] == [NUL_REPAIRED, NUL_REPAIRED]
    assert store.read_deployment_by_name("etl", NUL).id == deployment.id


def test_log_lines_are_repaired_and_one_bad_row_spares_the_others(
    store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    deployment = store.upsert_deployment(spec())
    ((run, _),) = store.create_flow_runs([NewFlowRun(flow_name="etl", deployment_id=deployment.id)])
    now = utcnow()
    gone = uuid4()  # a run that does not exist (deleted, say): its row cannot be stored

    def line(message: str, flow_run_id: object = run.id) -> LogRecord:
        return LogRecord(flow_run_id=flow_run_id, level=20, message=message, timestamp=now)

    with caplog.at_level(logging.ERROR, logger="headrace.store"):
        store.write_logs([line("first"), line(NUL), line("orphan", gone), line("last")])

    assert [r.message for r in store.read_logs(run.id)] == ["first", NUL_REPAIRED, "last"]
    reports = [r for r in caplog.records if str(gone) in r.getMessage()]
    assert len(reports) == 1, caplog.text

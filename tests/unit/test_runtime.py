"""Outside a run, the run context is empty: code that reads it runs anywhere."""

from __future__ import annotations

import os

import headrace
from headrace import runtime
from tests.flows import context


def test_outside_a_run_every_value_is_none() -> None:
    assert headrace.runtime is runtime
    assert context.context_as_dict() == {
        "id": None,
        "name": None,
        "run_count": None,
        "parameters": {},
        "deployment_id": None,
        "scheduled_start_time": None,
        "aware": None,
        "parent_flow_run_id": None,
    }


def test_calling_a_flow_outside_a_run_sees_no_run() -> None:
    assert context.report_context_on_schedule()["id"] is None
    assert context.report_context.fn()["run_count"] is None
    assert "HEADRACE_FLOW_RUN_ID" not in os.environ

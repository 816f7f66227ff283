"""The command line's renderers: durations, schedules, labels and tables as plain text."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from rich.console import Console, RenderableType

from headrace.cli.db import masked_url
from headrace.cli.errors import UsageProblem
from headrace.cli.output import (
    describe_schedule,
    final_line,
    format_duration,
    run_detail,
    run_label,
    runs_table,
)
from headrace.cli.runs import parse_states
from headrace.cli.serve import schedules_from_options
from headrace.flow_runs import FlowRun
from headrace.schedules import construct_schedule
from headrace.states import State, StateType


def render(renderable: RenderableType, width: int = 200) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(renderable)
    return out.getvalue()


def make_run(state: StateType, **fields: object) -> FlowRun:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    values: dict[str, object] = {
        "id": uuid4(),
        "name": "brave-otter",
        "flow_name": "add",
        "state": State(type=state, message=fields.pop("message", None)),
        "created": now,
        "updated": now,
    }
    return FlowRun.model_validate({**values, **fields})


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.012, "0.01s"), (12.34, "12.3s"), (61, "1m 01s"), (3725, "1h 02m")],
)
def test_durations_read_naturally(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_schedules_are_described_in_one_phrase() -> None:
    cron = construct_schedule(cron="0 9 * * *", timezone="Europe/Berlin")
    interval = construct_schedule(interval=90)
    rrule = construct_schedule(rrule="FREQ=DAILY")
    assert cron is not None and interval is not None and rrule is not None
    assert describe_schedule(cron) == "cron '0 9 * * *' (Europe/Berlin)"
    assert describe_schedule(interval) == "every 1m 30s"
    assert describe_schedule(rrule) == "rrule 'FREQ=DAILY'"


def test_schedule_options_allow_one_schedule_and_explain_bad_ones() -> None:
    assert schedules_from_options(None, None, None, None) == []
    [schedule] = schedules_from_options("*/5 * * * *", None, None, "UTC")
    assert describe_schedule(schedule) == "cron '*/5 * * * *'"
    with pytest.raises(UsageProblem, match="at most one of --cron, --interval, --rrule"):
        schedules_from_options("* * * * *", 5, None, None)
    with pytest.raises(UsageProblem, match="--timezone needs"):
        schedules_from_options(None, None, None, "UTC")
    with pytest.raises(UsageProblem, match="invalid cron expression 'nope'"):
        schedules_from_options("nope", None, None, None)
    with pytest.raises(UsageProblem, match="unknown timezone 'Mars/Base'"):
        schedules_from_options("0 * * * *", None, None, "Mars/Base")


def test_states_are_case_insensitive_and_checked() -> None:
    assert parse_states(None) is None
    assert parse_states(["failed", "Crashed"]) == ["FAILED", "CRASHED"]
    with pytest.raises(UsageProblem, match="Unknown state 'done'"):
        parse_states(["done"])


def test_database_passwords_are_masked() -> None:
    assert masked_url("postgresql://bob:s3cr@t@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert masked_url("sqlite:////tmp/headrace.db") == "sqlite:////tmp/headrace.db"


def test_runs_table_keeps_ids_whole_and_compacts_when_narrow() -> None:
    deployment_id = uuid4()
    run = make_run(StateType.COMPLETED, deployment_id=deployment_id, result=3)
    names = {deployment_id: "add/adder"}
    wide = render(runs_table([run], names, width=200))
    assert str(run.id) in wide and "brave-otter" in wide and "add/adder" in wide
    narrow = render(runs_table([run], names, width=80), width=80)
    assert str(run.id) in narrow and "add/adder" in narrow and "COMPLETED" in narrow
    assert max(len(line) for line in narrow.splitlines()) <= 80


def test_run_labels_and_final_lines() -> None:
    adhoc = make_run(StateType.FAILED, message="Flow run raised ValueError: boom\nTraceback ...")
    assert run_label(adhoc, {}) == "— (flow add)"
    start = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    adhoc = adhoc.model_copy(update={"start_time": start, "end_time": start + timedelta(seconds=2)})
    assert final_line(adhoc).plain == (
        "Flow run brave-otter FAILED after 2.00s: Flow run raised ValueError: boom"
    )
    done = make_run(StateType.COMPLETED, result={"total": 3})
    assert final_line(done).plain.endswith('result: {"total": 3}')


def test_a_requeued_run_waiting_again_shows_no_duration_and_honest_attempts() -> None:
    started = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    requeued = make_run(StateType.SCHEDULED, start_time=started, run_count=2, max_retries=0)
    shown = render(run_detail(requeued, [], {}))
    (duration,) = [line for line in shown.splitlines() if line.startswith("Duration")]
    assert duration.split() == ["Duration", "—"]  # not the time since the last attempt started
    assert "2 (1 allowed, more after a runner's shutdown requeued it)" in shown
    retrying = make_run(StateType.RUNNING, start_time=started, run_count=2, max_retries=2)
    assert "2 of 3" in render(run_detail(retrying, [], {}))


def test_a_result_too_large_to_keep_is_shown_as_not_stored_never_as_null() -> None:
    note = "The result was not stored: its JSON is 100,002 bytes, over the 65,536 bytes a run keeps"
    done = make_run(StateType.COMPLETED, result=None, result_truncated=True, message=note)
    shown = render(run_detail(done, [], {}))
    (result,) = [line for line in shown.splitlines() if line.startswith("Result")]
    assert "not stored: too large to keep" in result
    assert final_line(done).plain.endswith(f": {note}")


def test_runners_and_late_runs_render_for_a_reader() -> None:
    from datetime import timedelta
    from uuid import uuid4

    from rich.console import Console

    from headrace.cli.output import runners_summary, serving_runners_table, state_text
    from headrace.client import ServingRunner
    from headrace.states import LATE, State, StateType, utcnow

    now = utcnow()

    def runner(alive: bool) -> ServingRunner:
        beat = now - timedelta(seconds=5 if alive else 300)
        return ServingRunner(
            id=uuid4(), name="r", host="h", pid=42, started=beat, heartbeat=beat, alive=alive
        )

    assert str(runners_summary([runner(True), runner(True), runner(False)])) == "2 alive"
    assert str(runners_summary([runner(False)])) == "none alive"
    console = Console(width=100, record=True)
    console.print(serving_runners_table([runner(False)]))
    text = console.export_text()
    assert "5m 00s ago" in text and "presumed dead" in text
    assert str(state_text(State(type=StateType.SCHEDULED, name=LATE))) == "LATE"
    assert str(state_text(State(type=StateType.SCHEDULED))) == "SCHEDULED"


def test_a_subflow_run_shows_no_deployment_and_its_parent() -> None:
    parent_id = uuid4()
    child = make_run(StateType.COMPLETED, flow_name="child", parent_flow_run_id=parent_id)
    table = render(runs_table([child], {}))
    assert "— (flow child)" in table
    shown = render(run_detail(child, [], {}))
    assert re.search(r"Deployment +— \(flow child\)", shown)
    assert re.search(rf"Parent run +{parent_id}", shown)

"""The result store: local paths written whole, fsspec URLs, and what a run's result reads as."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import pytest

from headrace.exceptions import InvalidStateTransition, ObjectNotFound
from headrace.flow_runs import RESULT_SIZE_LIMIT, FlowRun
from headrace.process.child import encode_result
from headrace.process.results import has_scheme, read_result, result_of, write_result
from headrace.states import State, StateType


def run_with(state: StateType, message: str | None = None, **fields: object) -> FlowRun:
    now = datetime.now(UTC)
    return FlowRun(
        id=uuid4(),
        name="r",
        flow_name="f",
        state=State(type=state, message=message),
        created=now,
        updated=now,
        **fields,  # type: ignore[arg-type]
    )


def test_a_local_result_is_written_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    ref = write_result(str(tmp_path / "results"), "a.json", b'{"x": 1}')
    assert ref == str(tmp_path / "results" / "a.json")
    assert read_result(ref) == b'{"x": 1}'
    assert [p.name for p in (tmp_path / "results").iterdir()] == ["a.json"]


def test_an_fsspec_url_is_a_result_store() -> None:
    ref = write_result("memory://headrace-results", "b.json", b"[2]")
    assert ref.startswith("memory://") and read_result(ref) == b"[2]"


def test_only_a_scheme_makes_a_url() -> None:
    assert has_scheme("s3://bucket/x") and has_scheme("memory://x")
    assert not has_scheme("/var/lib/headrace") and not has_scheme("file:///tmp/x")
    assert not has_scheme("relative/dir")


def test_a_large_result_goes_to_the_store_and_reads_back_whole(tmp_path: Path) -> None:
    value = {"rows": ["x" * 100] * (RESULT_SIZE_LIMIT // 100)}
    completed = encode_result(value, str(tmp_path), "c.json")
    assert completed.result is None and not completed.result_truncated
    assert completed.result_ref == str(tmp_path / "c.json")
    run = run_with(StateType.COMPLETED, result_ref=completed.result_ref)
    assert result_of(run) == value


def test_a_large_result_without_a_store_is_marked_not_kept() -> None:
    completed = encode_result("x" * (RESULT_SIZE_LIMIT + 1))
    assert completed.result_truncated and completed.result_ref is None
    assert "over the 65,536 bytes a run keeps" in (completed.message or "")


def test_a_run_without_a_result_says_why() -> None:
    with pytest.raises(InvalidStateTransition, match="it is Running"):
        result_of(run_with(StateType.RUNNING))
    message = "The result (object) is not JSON-encodable: ..."
    with pytest.raises(InvalidStateTransition, match="not JSON-encodable"):
        result_of(run_with(StateType.COMPLETED, message))
    with pytest.raises(ObjectNotFound, match="cannot be read"):
        result_of(run_with(StateType.COMPLETED, result_ref="/nonexistent/headrace/x.json"))
    assert result_of(run_with(StateType.COMPLETED, result={"a": 1})) == {"a": 1}
    assert result_of(run_with(StateType.COMPLETED)) is None

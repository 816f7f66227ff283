"""Tasks and retry policies without a run's process: plain calls, futures, the engine's reports."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest

from headrace import exponential_backoff, flow, task
from headrace.exceptions import FlowDefinitionError
from headrace.process.protocol import TaskCached, TaskRunEvents, TaskRunUpdate
from headrace.process.task_reports import TaskReports
from headrace.process.taskruns import RunTaskEngine, current_task_run
from headrace.retries import delay_before, resolve_delays
from headrace.tasks import install_engine


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task
async def slow_add(x: int) -> int:
    await asyncio.sleep(0)
    return x + 1


def test_outside_a_run_a_task_is_a_plain_call() -> None:
    assert add(1) == 2 and add.name == "add"
    assert add.submit(2, y=3).result() == 5
    assert [f.result() for f in add.map([1, 2, 3])] == [2, 3, 4]
    assert asyncio.run(slow_add(1)) == 2
    assert slow_add.submit(5).result() == 6


def test_bad_task_options_are_named() -> None:
    with pytest.raises(FlowDefinitionError, match="retries"):
        task(retries=-1)(lambda: None)
    with pytest.raises(FlowDefinitionError, match="cache_expiration"):
        task(cache_expiration=5)(lambda: None)
    with pytest.raises(FlowDefinitionError, match="retry_delay_seconds"):
        task(retry_delay_seconds="soon")(lambda: None)
    with pytest.raises(FlowDefinitionError, match="retry_condition_fn"):
        flow(retry_condition_fn=3)(lambda: None)


def test_retry_delays_list_repeat_their_last_and_back_off() -> None:
    assert resolve_delays(3, 2) == [2.0]
    assert resolve_delays(3, [1, 5]) == [1.0, 5.0]
    assert [delay_before(n, [1.0, 5.0]) for n in (1, 2, 3)] == [1.0, 5.0, 5.0]
    assert resolve_delays(4, exponential_backoff(10)) == [10.0, 20.0, 40.0, 80.0]
    jittered = [delay_before(1, [10.0], 0.5) for _ in range(200)]
    assert all(5.0 <= d <= 15.0 for d in jittered) and len(set(jittered)) > 1
    backed_off = flow(retries=3, retry_delay_seconds=exponential_backoff(1))(lambda: None)
    assert backed_off.retry_delays == [1.0, 2.0, 4.0] and backed_off.retry_delay_seconds == 1.0


class Recorder:
    """What the engine sends down the pipe, unbatched."""

    def __init__(self) -> None:
        self.batches: list[TaskRunEvents] = []
        self.engine = RunTaskEngine(self.batches.append)

    def cached(self) -> list[TaskCached]:
        self.engine.reports.flush()
        return [entry for batch in self.batches for entry in batch.cached]

    def last_states(self) -> dict[str, tuple[str, str, int]]:
        self.engine.reports.flush()
        updates = [u for batch in self.batches for u in batch.updates]
        return {u.name: (u.state_type, u.state_name, u.run_count) for u in updates}


@pytest.fixture
def recorder() -> Any:
    sent = Recorder()
    install_engine(sent.engine)
    yield sent
    install_engine(None)


def test_inside_a_run_each_call_is_reported(recorder: Recorder) -> None:
    seen: list[str | None] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=lambda e: "again" in str(e))
    def picky(attempts: list[int]) -> int:
        seen.append(current_task_run.get())
        attempts.append(1)
        if len(attempts) < 2:
            raise ValueError("try again")
        if len(attempts) < 3:
            raise ValueError("give up")
        return len(attempts)

    assert add(1) == 2
    with pytest.raises(ValueError, match="give up"):
        picky([])
    assert recorder.last_states() == {
        "add-0": ("COMPLETED", "Completed", 1),
        "picky-0": ("FAILED", "Failed", 2),
    }
    assert seen == ["picky-0", "picky-0"]
    assert current_task_run.get() is None


def test_inside_a_run_the_cache_answers_and_timeouts_fail(recorder: Recorder) -> None:
    calls: list[int] = []

    @task(cache_key_fn=lambda ctx, p: str(p["x"]), cache_expiration=timedelta(minutes=1))
    def costly(x: int) -> int:
        calls.append(x)
        return x * 2

    @task(timeout_seconds=0.05)
    def stuck() -> None:
        import time

        time.sleep(0.5)

    assert [costly(3), costly(3), costly(4)] == [6, 6, 8]
    assert calls == [3, 4]
    assert [e.key for e in recorder.cached()] == ["costly:3", "costly:4"]
    assert recorder.last_states()["costly-1"] == ("COMPLETED", "Cached", 0)
    with pytest.raises(TimeoutError, match=r"'stuck' timed out after 0\.05 s"):
        stuck()


def test_inside_a_run_async_tasks_run_on_the_flow_loop(recorder: Recorder) -> None:
    async def body() -> list[int]:
        futures = slow_add.map([1, 2])
        with pytest.raises(RuntimeError, match="await"):
            futures[0].result()
        return [await slow_add(0), *[await f for f in futures]]

    assert asyncio.run(body()) == [1, 2, 3]
    assert add.submit(slow_add.submit(1)).result() == 3  # a future as an argument
    assert len(recorder.last_states()) == 5


def test_reports_wait_for_a_batch_or_a_moment() -> None:
    sent: list[TaskRunEvents] = []
    arrived = threading.Event()

    def send(batch: Any) -> None:
        sent.append(batch)
        arrived.set()

    reports = TaskReports(send, max_batch=3, delay_seconds=0.05)
    started = TaskRunUpdate("1", "a-0", "a", "RUNNING", "Running", 1, 0.0, None)
    reports.update(started)
    reports.update(started._replace(state_type="COMPLETED", end_time=1.0))
    assert arrived.wait(5)  # the timer sent them, the latest of the task run only
    assert [[u.state_type for u in b.updates] for b in sent] == [["COMPLETED"]]
    for n in range(3):
        reports.update(started._replace(id=str(n + 2)))
    assert len(sent) == 2 and len(sent[1].updates) == 3  # a full batch goes at once

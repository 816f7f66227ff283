"""The store's thread runs what somebody waits on first, then claims, then bookkeeping."""

from __future__ import annotations

import threading

from headrace.store.threads import BACKGROUND, DISPATCH, URGENT, StoreWorker


def test_queued_work_runs_by_priority_then_in_arrival_order() -> None:
    worker = StoreWorker(name="test-store")
    gate = threading.Event()
    order: list[str] = []
    try:
        blocker = worker.submit(gate.wait)  # holds the thread while the rest queue up
        futures = [
            worker.submit(lambda name=name: order.append(name), priority)
            for name, priority in [
                ("log 1", BACKGROUND),
                ("claim", DISPATCH),
                ("trigger 1", URGENT),
                ("log 2", BACKGROUND),
                ("trigger 2", URGENT),
            ]
        ]
        gate.set()
        blocker.result(timeout=10)
        for future in futures:
            future.result(timeout=10)
    finally:
        worker.shutdown()
    assert order == ["trigger 1", "trigger 2", "claim", "log 1", "log 2"]


def test_a_failing_call_fails_only_its_own_future() -> None:
    worker = StoreWorker(name="test-store")
    try:
        failing = worker.submit(lambda: 1 / 0)
        fine = worker.submit(lambda: 42)
        assert fine.result(timeout=10) == 42
        assert isinstance(failing.exception(timeout=10), ZeroDivisionError)
    finally:
        worker.shutdown()

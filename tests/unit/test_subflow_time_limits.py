"""A subflow's time limit in another thread waits for the end of a message that thread sends."""

from __future__ import annotations

import threading

import pytest

from headrace.process import subflow_cancels
from headrace.process import subflow_time_limits as time_limits

pytestmark = pytest.mark.timeout(30)


def test_an_expiry_in_a_thread_that_sends_is_raised_once_its_message_is_out() -> None:
    limit = time_limits.Limit(3600, "Flow run timed out after 3600 s")
    entered, expired = threading.Event(), threading.Event()
    seen: list[str] = []

    def body() -> None:
        try:
            with time_limits.running(limit):
                try:
                    subflow_cancels.sending()
                    entered.set()
                    expired.wait()
                    seen.append("sent")  # no expiry raised while the message goes out
                finally:
                    subflow_cancels.sent()
                for _ in range(1000):  # the expiry is raised here, at its next line
                    seen.append("after")
        except time_limits.Expired as exc:
            seen.append(f"{time_limits.owner_of(exc) is limit} {exc}")

    thread = threading.Thread(target=body)
    thread.start()
    entered.wait()
    time_limits._expire(limit)  # as its timer does, without waiting an hour
    expired.set()
    thread.join()
    assert seen[0] == "sent" and seen[-1] == "True Flow run timed out after 3600 s", seen[-3:]
    assert len(seen) < 1000


def test_a_limit_left_before_it_expires_never_raises() -> None:
    limit = time_limits.Limit(3600, "Flow run timed out after 3600 s")
    with time_limits.running(limit):
        pass
    time_limits._expire(limit)  # its timer, had it not been stopped in time
    assert not limit.fired
    total = sum(range(10000))  # Python runs on: nothing was set on this thread
    assert total == 49995000

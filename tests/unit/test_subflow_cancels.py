"""A subflow's cancel in another thread waits for the end of a message that thread sends."""

from __future__ import annotations

import threading

import pytest

from headrace.exceptions import FlowRunCancelled
from headrace.process import subflow_cancels

pytestmark = pytest.mark.timeout(30)


def test_a_cancel_of_a_thread_that_sends_is_raised_once_its_message_is_out() -> None:
    call_id = "00000000-0000-0000-0000-00000000c0de"
    entered, requested = threading.Event(), threading.Event()
    seen: list[str] = []
    raised: list[FlowRunCancelled] = []

    def body() -> None:
        call = subflow_cancels.Call(call_id, "loud", "parent", threading.get_ident())
        subflow_cancels.enter(call)
        subflow_cancels.body_entered(call)
        try:
            try:
                subflow_cancels.sending()
                entered.set()
                requested.wait()
                seen.append("sent")  # no cancel raised while the message goes out
            finally:
                subflow_cancels.sent()
            for _ in range(1000):  # the cancel is raised here, at its next line
                seen.append("after")
        except FlowRunCancelled as exc:
            seen.append("cancelled")
            raised.append(exc)
        finally:
            subflow_cancels.body_left(call)
            subflow_cancels.leave(call)

    thread = threading.Thread(target=body)
    thread.start()
    entered.wait()
    subflow_cancels.request(call_id)
    requested.set()
    thread.join()
    assert seen[0] == "sent" and seen[-1] == "cancelled", seen[:3] + seen[-3:]
    assert len(seen) < 1000
    (cancel,) = raised
    assert (str(cancel), cancel.flow_run_id) == ("Flow run loud was cancelled", call_id)

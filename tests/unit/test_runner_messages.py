"""What a run's process hears of its runner on the events socket: stops, and children to cancel."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from uuid import uuid4

import pytest

from headrace.process.protocol import CANCEL_CHILD, STOP_REQUEST
from headrace.process.runner_messages import RunnerMessages, _parsed


def test_messages_are_parsed_whole_and_a_cut_one_waits() -> None:
    child = uuid4()
    message = CANCEL_CHILD + child.bytes
    assert _parsed(message) == (False, [str(child)], b"")
    assert _parsed(message[:9]) == (False, [], message[:9])
    assert _parsed(STOP_REQUEST) == (True, [], b"")
    assert _parsed(message + STOP_REQUEST + message[:3]) == (True, [str(child)], message[:3])
    assert _parsed(b"x") == (True, [], b"")  # any other byte: a stop, as before


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    runner, run = socket.socketpair()
    yield runner, run
    runner.close()
    run.close()


def test_a_child_cancel_is_heard_and_is_no_stop(pair: tuple[socket.socket, socket.socket]) -> None:
    runner, run = pair
    heard: list[str] = []
    told = threading.Event()

    def on_cancel(child_id: str) -> None:
        heard.append(child_id)
        told.set()

    messages = RunnerMessages(run.fileno(), on_cancel)
    messages.start()
    child = uuid4()
    message = CANCEL_CHILD + child.bytes
    runner.sendall(message[:5])  # a message may come in two reads
    assert not messages.stop_asked()
    runner.sendall(message[5:])
    assert told.wait(10)
    assert heard == [str(child)]
    assert not messages.stop_asked()
    runner.sendall(STOP_REQUEST)
    assert messages.stop_asked()  # read or not yet read: the same answer
    runner.close()
    messages.thread.join(10)
    assert not messages.thread.is_alive()


def test_the_runner_gone_is_a_stop(pair: tuple[socket.socket, socket.socket]) -> None:
    runner, run = pair
    messages = RunnerMessages(run.fileno(), lambda child_id: None)
    messages.start()
    assert not messages.stop_asked()
    runner.close()
    assert messages.stop_asked()
    messages.thread.join(10)
    assert messages.stop_asked() and not messages.thread.is_alive()

"""A run's process sends each event whole or not at all, whatever is raised as it sends."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import signal
import socket
import threading
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import pytest

from headrace.process.frames import FrameSender, frame
from headrace.process.protocol import Completed, Log, Running

pytestmark = pytest.mark.timeout(60)

ROUNDS = 100


class Interrupted(Exception):
    pass


def events_in(data: bytes) -> Iterator[Any]:
    """The events in ``data``, framed as the runner's reader (``pipes.EventReader``) reads."""
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big", signed=True)
        at += 4
        if size == -1:
            size = int.from_bytes(data[at : at + 8], "big")
            at += 8
        assert at + size <= len(data), "a frame cut short"
        yield pickle.loads(data[at : at + size])
        at += size


@contextlib.contextmanager
def received() -> Iterator[tuple[FrameSender, list[bytes]]]:
    """A sender on a socket pair, and (once the block ends) all the other end read."""
    ours, theirs = socket.socketpair()
    sender = FrameSender(ours.detach())
    data: list[bytes] = []

    def read_all() -> None:
        with theirs:
            while chunk := theirs.recv(65536):
                data.append(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        yield sender, data
    finally:
        sender.close()
        reader.join()


def test_a_frame_is_what_a_multiprocessing_connection_reads() -> None:
    events = [Running(1.0, 42), Log(20, "y" * 100_000, 1.5), Completed("x" * 40_000)]
    read_fd, write_fd = os.pipe()

    def write() -> None:
        for event in events:
            os.write(write_fd, frame(event))

    with Connection(read_fd, writable=False) as reader:
        writer = threading.Thread(target=write)
        writer.start()
        assert [reader.recv() for _ in events] == events
        writer.join()
    os.close(write_fd)


@pytest.mark.parametrize("size", [100, 300_000])
def test_frames_are_whole_in_threads_an_exception_is_set_on_as_they_send(size: int) -> None:
    event = Log(20, "z" * size, 1.5)
    with received() as (sender, data):

        def send_until_interrupted(started: threading.Event) -> None:
            with contextlib.suppress(Interrupted):
                while True:
                    sender.send(event)
                    started.set()

        for _ in range(ROUNDS):
            started = threading.Event()
            thread = threading.Thread(target=send_until_interrupted, args=(started,))
            thread.start()
            started.wait()
            assert thread.ident is not None
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread.ident), ctypes.py_object(Interrupted)
            )
            thread.join()
    events = list(events_in(b"".join(data)))
    assert len(events) >= ROUNDS and all(each == event for each in events)


@pytest.mark.parametrize("size", [100, 300_000])
def test_frames_are_whole_in_the_main_thread_whose_signal_handler_raises(size: int) -> None:
    event = Log(20, "z" * size, 1.5)
    armed = [False]
    interrupted = threading.Semaphore(0)

    def on_signal(signum: int, frame: Any) -> None:
        if armed[0]:  # raised only inside the loop's try
            armed[0] = False
            raise Interrupted

    def strike() -> None:
        main = threading.main_thread().ident or 0
        for _ in range(ROUNDS):
            signal.pthread_kill(main, signal.SIGUSR1)
            while not interrupted.acquire(timeout=0.01):  # it came before the loop was armed
                signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, on_signal)
    striker = threading.Thread(target=strike)
    try:
        with received() as (sender, data):
            striker.start()
            for _ in range(ROUNDS):
                try:
                    armed[0] = True
                    while True:
                        sender.send(event)
                except Interrupted:
                    interrupted.release()
            striker.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    events = list(events_in(b"".join(data)))
    assert all(each == event for each in events)

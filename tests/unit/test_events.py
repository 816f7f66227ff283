"""The runner's reading of a run's events pipe: whole events, whatever the writes."""

from __future__ import annotations

import asyncio
import io
import os
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from headrace.process.events import EventReader
from tests.helpers import eventually


def framed(*events: tuple[Any, ...]) -> bytes:
    """The bytes ``Connection.send`` writes for these events, as the run's process sends them."""
    read_fd, write_fd = os.pipe()
    with ThreadPoolExecutor(1) as pool, io.FileIO(read_fd) as pipe:
        read = pool.submit(pipe.read)  # the pipe holds less than the events
        with Connection(write_fd, readable=False) as sender:
            for event in events:
                sender.send(event)
        return read.result()


class Received(list[tuple[Any, ...]]):
    """The events handed on so far, with a way to wait for more."""

    def __init__(self) -> None:
        super().__init__()
        self._added = asyncio.Event()

    def append(self, event: tuple[Any, ...]) -> None:
        super().append(event)
        self._added.set()

    async def count(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self) < n:
                self._added.clear()
                await self._added.wait()


async def closed(reader: EventReader) -> None:
    async def is_closed() -> bool:
        return reader.closed

    await eventually(is_closed, bool, timeout=5, what="the reader to close")


async def test_an_event_split_across_writes_arrives_once_whole() -> None:
    big = ("log", 30, "y" * 100_000, 1.5)
    data = framed(("running", 1.0, 42), big, ("completed", "x" * 40_000))
    received = Received()
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd, received.append)
    try:
        # The first event and part of the second, then the rest in pieces.
        cut = len(data) // 3
        os.write(write_fd, data[:cut])
        await received.count(1)  # the reader took all that was written: half an event waits
        assert received == [("running", 1.0, 42)]
        rest = memoryview(data)[cut:]
        while rest:
            written = os.write(write_fd, rest[:4096])
            rest = rest[written:]
            await asyncio.sleep(0)
        await received.count(3)
        assert received[1] == big
        assert received[2] == ("completed", "x" * 40_000)
    finally:
        os.close(write_fd)
    await closed(reader)  # the end of the pipe closes the reader


async def test_a_message_cut_short_by_the_process_end_is_dropped() -> None:
    data = framed(("running", 1.0, 42), ("completed", "x" * 40_000))
    received = Received()
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd, received.append)
    os.write(write_fd, data[:-10])
    os.close(write_fd)
    await closed(reader)
    assert received == [("running", 1.0, 42)]


async def test_garbage_on_the_pipe_closes_the_reader_without_raising() -> None:
    received = Received()
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd, received.append)
    os.write(write_fd, framed(("running", 1.0, 42)) + b"\x00\x00\x00\x03abc")
    await closed(reader)
    os.close(write_fd)
    assert received == [("running", 1.0, 42)]  # what came before the garbage counts

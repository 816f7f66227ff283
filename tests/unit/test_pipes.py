"""The runner's reading of a run's pipes: whole events and whole lines, whatever the writes."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection

from headrace.process.pipes import EventReader, cut_line, read_output
from headrace.process.protocol import ChildEvent, Completed, Log, Running
from tests.helpers import eventually


def framed(*events: ChildEvent) -> bytes:
    """The bytes ``Connection.send`` writes for these events, as the run's process sends them."""
    read_fd, write_fd = os.pipe()
    with ThreadPoolExecutor(1) as pool, io.FileIO(read_fd) as pipe:
        read = pool.submit(pipe.read)  # the pipe holds less than the events
        with Connection(write_fd, readable=False) as sender:
            for event in events:
                sender.send(event)
        return read.result()


class Received(list[ChildEvent]):
    """The events handed on so far, with a way to wait for more."""

    def __init__(self) -> None:
        super().__init__()
        self._added = asyncio.Event()

    def append(self, event: ChildEvent) -> None:
        super().append(event)
        self._added.set()

    async def reach(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self) < n:
                self._added.clear()
                await self._added.wait()


async def closed(reader: EventReader) -> None:
    async def is_closed() -> bool:
        return reader.closed

    await eventually(is_closed, bool, timeout=5, what="the reader to close")


async def test_an_event_split_across_writes_arrives_once_whole() -> None:
    big = Log(30, "y" * 100_000, 1.5)
    data = framed(Running(1.0, 42), big, Completed("x" * 40_000))
    received = Received()
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd, received.append)
    try:
        # The first event and part of the second, then the rest in pieces.
        cut = len(data) // 3
        os.write(write_fd, data[:cut])
        await received.reach(1)  # the reader took all that was written: half an event waits
        assert received == [Running(1.0, 42)]
        rest = memoryview(data)[cut:]
        while rest:
            written = os.write(write_fd, rest[:4096])
            rest = rest[written:]
            await asyncio.sleep(0)
        await received.reach(3)
        assert received[1] == big
        assert received[2] == Completed("x" * 40_000)
    finally:
        os.close(write_fd)
    await closed(reader)  # the end of the pipe closes the reader


async def test_a_message_cut_short_by_the_process_end_is_dropped() -> None:
    data = framed(Running(1.0, 42), Completed("x" * 40_000))
    received = Received()
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd, received.append)
    os.write(write_fd, data[:-10])
    os.close(write_fd)
    await closed(reader)
    assert received == [Running(1.0, 42)]


async def test_garbage_on_the_pipe_closes_the_reader_without_raising() -> None:
    received = Received()
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd, received.append)
    os.write(write_fd, framed(Running(1.0, 42)) + b"\x00\x00\x00\x03abc")
    await closed(reader)
    os.close(write_fd)
    assert received == [Running(1.0, 42)]  # what came before the garbage counts


async def test_output_arrives_line_by_line_a_long_line_once_cut() -> None:
    lines: list[tuple[int, str]] = []
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in (out_r, err_r):
        os.set_blocking(fd, False)
    limit = 16_384
    readers = read_output(
        (out_r, err_r),
        lambda level, line, cut: lines.append((level, cut_line(line, limit, cut))),
        limit,
    )

    async def count() -> int:
        await asyncio.sleep(0.01)
        return len(lines)

    os.write(out_w, b"one\r\ntw")
    os.write(err_w, b"oops \xff\n")
    os.write(out_w, b"o\n" + b"z" * 40_000)
    await eventually(count, lambda n: n == 3, timeout=5, what="three lines")
    for _ in range(4):  # a line of 200,000 characters, in several reads
        os.write(out_w, b"z" * 40_000)
        await asyncio.sleep(0.05)
    os.write(out_w, b"\nlast, unfinished")
    os.close(out_w)
    os.close(err_w)
    for reader in readers:
        reader.close()  # takes what is left, and the last partial line
    info = [line for level, line in lines if level == logging.INFO]
    cut = "z" * limit + "… [cut: 183,616 more characters]"
    assert info == ["one", "two", cut, "last, unfinished"]
    assert [line for level, line in lines if level == logging.ERROR] == ["oops \ufffd"]


async def test_a_long_line_of_many_byte_characters_counts_characters_not_bytes() -> None:
    lines: list[str] = []
    out_r, out_w = os.pipe()
    os.set_blocking(out_r, False)
    (reader,) = read_output(
        (out_r, -1), lambda level, line, cut: lines.append(cut_line(line, 10, cut)), 10
    )
    text = "é" * 7 + "€" * 8 + "😀" * 5  # 20 characters of 2, 3 and 4 bytes
    os.write(out_w, text.encode() + b"\r")  # split from its newline, and mid-character
    os.write(out_w, b"\n\xff\xfeok\r")
    os.write(out_w, b"\n")
    os.close(out_w)
    reader.close()
    assert lines == [text[:10] + "… [cut: 10 more characters]", "\ufffd\ufffdok"]


def test_cut_line_leaves_a_line_within_the_limit_alone() -> None:
    assert cut_line("abc", 3) == "abc"
    assert cut_line("abcd", 3) == "abc… [cut: 1 more characters]"

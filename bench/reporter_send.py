"""What ``Reporter.send`` costs for one small log event, in the main thread and in another.

    python bench/reporter_send.py [--events N] [--rounds N]

A run's process sends each log line and each task-run batch with it, so its cost is
paid per line. Here it writes rounds of N events to a real socket pair, emptied
between rounds (untimed, so no reading thread competes for the interpreter); the
median round is reported, in µs per event.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from headrace.process.child import Reporter
from headrace.process.frames import FrameSender
from headrace.process.protocol import Log


def drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        while sock.recv(1 << 20, socket.MSG_DONTWAIT):
            pass


def per_event(reporter: Reporter, other_end: socket.socket, events: int, rounds: int) -> float:
    event = Log(20, "tests.bench - a log line of ordinary length, about eighty chars", 1.5)
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        for _ in range(events):
            reporter.send(event)
        times.append(time.perf_counter() - began)
        drain(other_end)
    return statistics.median(times) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    ours, theirs = socket.socketpair()
    reporter = Reporter(FrameSender(os.dup(ours.fileno())))
    main_us = per_event(reporter, theirs, args.events, args.rounds)
    with ThreadPoolExecutor(1) as pool:
        other_us = pool.submit(per_event, reporter, theirs, args.events, args.rounds).result()
    print(f"Reporter.send, small log event, main thread:  {main_us:6.2f} µs")
    print(f"Reporter.send, small log event, other thread: {other_us:6.2f} µs")


if __name__ == "__main__":
    main()

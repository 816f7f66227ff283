"""What the runner's metrics cost: M2 trigger throughput with them on and off, same sitting.

    python bench/metrics_cost.py [--database-url URL] [--rounds N] [--quick]

Servers with metrics on and off take turns, each on a fresh database, the order
swapped every round (on, off, off, on, on, off, ...), so drift on a shared host
and whatever the first of a pair pays fall on both sides alike. The verdict
compares the medians: metrics on must keep within 3% of off.

Throughput on a busy shared host swings by more than that from one round to the
next, so each round also reports the serving process's own CPU time per accepted
trigger (from /proc, the runs' processes left out: they do the same work either
way), which contention moves far less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import httpx

from results import Results
from run import QUICK, Bench, Sizes
from server import Server

ALLOWED_COST = 0.03


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of one process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one_round(
    database_url: str | None, sizes: Sizes, work: Path, *, metrics: bool
) -> tuple[float, float]:
    """Triggers accepted per second by one fresh server, and its CPU ms per accepted trigger."""
    from scale import fresh_database

    name = f"metrics-{'on' if metrics else 'off'}"
    with fresh_database(database_url, work, name) as url:
        server = Server(work / name, url, 8, metrics=metrics)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                await server.wait_ready(client)
                bench = Bench(server, client, sizes, work)
                await bench.find_deployment()
                results = Results(database="")
                before = cpu_seconds(server.process.pid)
                await bench.m2_throughput(results)
                used = cpu_seconds(server.process.pid) - before
                measured = results.metrics["M2 trigger throughput"]
                accepted = sizes.m2_requests - measured["errors"]
                return float(measured["accepted_per_s"]), 1000 * used / max(accepted, 1)
        finally:
            server.stop()
            shutil.rmtree(work / name, ignore_errors=True)


async def measure(database_url: str | None, sizes: Sizes, rounds: int, work: Path) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for index in range(rounds):
        for metrics in (True, False) if index % 2 == 0 else (False, True):
            rate, cpu_ms = await one_round(database_url, sizes, work, metrics=metrics)
            rates[metrics].append(rate)
            cpu[metrics].append(cpu_ms)
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    cost = 1 - on / off
    print(f"M2 accepted/s, metrics on:  {on:8.1f}  (rounds: {_rounded(rates[True])})")
    print(f"M2 accepted/s, metrics off: {off:8.1f}  (rounds: {_rounded(rates[False])})")
    verdict = "within" if cost <= ALLOWED_COST else "OVER"
    print(f"cost of metrics: {cost:+.1%} ({verdict} the {ALLOWED_COST:.0%} allowed)")
    cpu_on, cpu_off = statistics.median(cpu[True]), statistics.median(cpu[False])
    print(f"server CPU ms/trigger, metrics on:  {cpu_on:.3f}  (rounds: {_rounded(cpu[True], 3)})")
    print(f"server CPU ms/trigger, metrics off: {cpu_off:.3f}  (rounds: {_rounded(cpu[False], 3)})")
    print(f"CPU cost of metrics: {cpu_on / cpu_off - 1:+.1%}")


def _rounded(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{value:.{digits}f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary home")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    work = Path(tempfile.mkdtemp(prefix="headrace-bench-metrics-"))
    try:
        asyncio.run(measure(args.database_url, sizes, args.rounds, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

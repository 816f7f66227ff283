"""What the runner's metrics cost: M2 trigger throughput with them on and off, same sitting.

    python bench/metrics_cost.py [--database-url URL] [--rounds N] [--quick]

Servers with metrics on and off take turns, each on a fresh database, the order
swapped every round (on, off, off, on, on, off, ...), so drift on a shared host
and whatever the first of a pair pays fall on both sides alike. The verdict
compares the medians: metrics on must keep within 3% of off.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

import httpx

from results import Results
from run import QUICK, Bench, Sizes
from server import Server

ALLOWED_COST = 0.03


async def one_round(database_url: str | None, sizes: Sizes, work: Path, *, metrics: bool) -> float:
    """Triggers accepted per second by one fresh server."""
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
                await bench.m2_throughput(results)
                rate = results.metrics["M2 trigger throughput"]["accepted_per_s"]
                return float(rate)
        finally:
            server.stop()
            shutil.rmtree(work / name, ignore_errors=True)


async def measure(database_url: str | None, sizes: Sizes, rounds: int, work: Path) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for index in range(rounds):
        for metrics in (True, False) if index % 2 == 0 else (False, True):
            rates[metrics].append(await one_round(database_url, sizes, work, metrics=metrics))
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    cost = 1 - on / off
    print(f"M2 accepted/s, metrics on:  {on:8.1f}  (rounds: {_rounded(rates[True])})")
    print(f"M2 accepted/s, metrics off: {off:8.1f}  (rounds: {_rounded(rates[False])})")
    verdict = "within" if cost <= ALLOWED_COST else "OVER"
    print(f"cost of metrics: {cost:+.1%} ({verdict} the {ALLOWED_COST:.0%} allowed)")


def _rounded(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


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

"""What a task call costs inside a real run, over a plain call of the same function.

    python bench/task_overhead.py [--database-url URL] [--calls N] [--rounds N]

A runner on a fresh database (SQLite in a temporary directory, or a new
PostgreSQL database beside the one a URL names, dropped afterwards) runs
``task_flow.task_overhead``: in its run's process it times N plain
calls and N task calls (each recorded as a task run, reported over the run's
pipe and stored by the runner), and returns the difference per call. The run
must also end COMPLETED with every task run stored. Target: at most 200 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from headrace.client import get_client
from headrace.runner import Runner
from headrace.settings import Settings
from headrace.states import TERMINAL_STATES
from scale import fresh_database
from task_flow import task_overhead

TARGET_US = 200.0


async def measure(settings: Settings, calls: int, rounds: int) -> dict[str, float]:
    runner = Runner(settings=settings, query_seconds=0.2, handle_signals=False)
    deployment = await runner.add_flow(task_overhead)
    async with runner, get_client(settings) as client:
        run = await client.create_flow_run_from_deployment(
            deployment, {"calls": calls, "rounds": rounds}
        )
        began = time.monotonic()
        await runner.execute_flow_run(run.id)
        done = await client.read_flow_run(run.id)
        assert done.state.type in TERMINAL_STATES
        if done.result is None:
            raise SystemExit(f"The run ended {done.state.type.value}: {done.state.message}")
        stored = len(await client.read_task_runs(run.id))
        return {**done.result, "stored": stored, "run_seconds": time.monotonic() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as home,
        fresh_database(args.database_url, Path(home), "tasks") as url,
    ):
        settings = Settings(home=Path(home), database_url=url)
        result = asyncio.run(measure(settings, args.calls, args.rounds))
    expected = args.calls * args.rounds
    verdict = "within" if result["overhead_us"] <= TARGET_US else "OVER"
    overhead = result["overhead_us"]
    print(f"plain call:    {result['plain_us']:8.2f} µs")
    print(f"task call:     {result['task_us']:8.2f} µs  (inside a run)")
    print(f"task overhead: {overhead:8.2f} µs per call ({verdict} the {TARGET_US:g} µs target)")
    seconds = result["run_seconds"]
    print(f"task runs stored: {result['stored']:,} of {expected:,}; the run took {seconds:.1f} s")


if __name__ == "__main__":
    main()

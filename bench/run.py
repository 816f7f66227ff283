"""headrace's benchmark: a real `headrace serve` on 127.0.0.1, driven over HTTP.

    python bench/run.py [--database-url URL] [--quick] [--only m2] [--json-out F]

Every loop is bounded in count and in time; all traffic goes to 127.0.0.1.
Floors measured in the same run (floors.py) end the table: each metric's median
as a multiple of what this host does with nothing of headrace in the way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from floors import COMMIT, FORK, ROUTE, add_ratios, commit_floor, fork_floor, route_floor
from rawhttp import Connection, Reply
from results import Results, percentiles
from server import FLOW_FILE, Server, tree_memory_mb

PHASE_TIMEOUT_SECONDS = 120
REFUSAL_BACKLOG = 50
"""The backlog limit of the server M2's refusals are measured on."""


@dataclass
class Sizes:
    m1: int = 200
    m2_requests: int = 2000
    m2_clients: int = 32
    m3: int = 30
    m4: int = 200
    m6: int = 500
    m7: int = 100
    m8_runs: int = 100_000
    m8_deployments: int = 500
    floors: int = 200


QUICK = Sizes(
    m1=20, m2_requests=200, m2_clients=8, m3=5, m4=20, m6=50, m7=10,
    m8_runs=5000, m8_deployments=50, floors=30,
)  # fmt: skip


async def timed(call: Callable[[], Awaitable[Reply]]) -> tuple[float, Reply]:
    start = time.perf_counter()
    response = await call()
    return (time.perf_counter() - start) * 1000, response


class Bench:
    def __init__(self, server: Server, client: httpx.AsyncClient, sizes: Sizes, work: Path) -> None:
        self.server = server
        self.client = client
        self.sizes = sizes
        self.work = work
        self.deployment_id = ""
        self.raw = Connection("127.0.0.1", server.port)

    @property
    def run_path(self) -> str:
        return f"/deployment/{self.deployment_id}/run"

    async def find_deployment(self) -> None:
        response = await self.client.get(f"{self.server.url}/deployments")
        response.raise_for_status()
        (deployment,) = [d for d in response.json() if d["name"] == "bench"]
        self.deployment_id = deployment["id"]

    def out(self, name: str) -> Path:
        return self.work / f"{name}.out"

    async def trigger(
        self, out: Path, t0: float | None = None, connection: Connection | None = None
    ) -> Reply:
        body = {"t0": t0 if t0 is not None else time.time(), "out": str(out)}
        return await (connection or self.raw).request("POST", self.run_path, body)

    async def settle(self) -> None:
        """Wait (bounded) until nothing is queued or running, so phases do not overlap."""
        deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            running = (await self.client.get(f"{self.server.url}/run_count")).json()
            queued = await self.client.get(
                f"{self.server.url}/flow_runs",
                params={"state": "SCHEDULED", "limit": 1, "deployment_id": self.deployment_id},
            )
            if running == 0 and not queued.json():
                return
            await asyncio.sleep(0.1)
        raise RuntimeError("the runner did not settle in time")

    async def m1_trigger_latency(self, results: Results, key: str = "M1 trigger latency") -> None:
        samples = []
        for _ in range(self.sizes.m1):
            ms, response = await timed(lambda: self.trigger(self.out("m1")))
            assert response.status_code == 201, response.text
            samples.append(ms)
        results.add(key, n=len(samples), **percentiles(samples))
        await self.settle()

    async def hammer(self, body: dict[str, object]) -> tuple[dict[int, int], float, list[float]]:
        """`m2_requests` triggers over `m2_clients` connections: statuses, seconds, latencies."""
        remaining = self.sizes.m2_requests
        statuses: dict[int, int] = {}
        samples: list[float] = []

        async def worker() -> None:
            nonlocal remaining
            connection = Connection("127.0.0.1", self.server.port)
            while remaining > 0:
                remaining -= 1
                try:
                    ms, response = await timed(
                        lambda: connection.request("POST", self.run_path, body)
                    )
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    samples.append(ms)
                except (OSError, asyncio.IncompleteReadError):
                    statuses[0] = statuses.get(0, 0) + 1
            await connection.close()

        start = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(self.sizes.m2_clients))),
            PHASE_TIMEOUT_SECONDS,
        )
        return statuses, time.perf_counter() - start, samples

    async def m2_throughput(self, results: Results) -> None:
        body = {"t0": time.time(), "out": str(self.out("m2"))}
        statuses, elapsed, samples = await self.hammer(body)
        accepted = statuses.get(201, 0)
        results.add(
            "M2 trigger throughput",
            clients=self.sizes.m2_clients,
            requests=self.sizes.m2_requests,
            accepted_per_s=accepted / elapsed,
            errors=self.sizes.m2_requests - accepted,
            p50_ms=statistics.median(samples) if samples else float("nan"),
        )
        await self.settle()

    async def m2_refusals(self, results: Results) -> None:
        """M2 with the backlog full: every trigger is refused with 429, which must cost less
        than accepting. The runner's one slot holds a run that sleeps; the rest wait."""
        blocker = {"t0": time.time(), "out": str(self.out("m2r")), "sleep": 600.0}
        for _ in range(REFUSAL_BACKLOG + 1):
            await self.raw.request("POST", self.run_path, blocker)
        deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS
        while (await self.client.get(f"{self.server.url}/run_count")).json() < 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the blocking run did not start in time")
            await asyncio.sleep(0.05)
        for _ in range(REFUSAL_BACKLOG):  # the place the started run left
            if (await self.raw.request("POST", self.run_path, blocker)).status_code == 429:
                break
        statuses, elapsed, samples = await self.hammer(blocker)
        refused = statuses.get(429, 0)
        results.add(
            "M2 refusal throughput",
            clients=self.sizes.m2_clients,
            requests=self.sizes.m2_requests,
            refused_per_s=refused / elapsed,
            errors=self.sizes.m2_requests - refused,
            p50_ms=statistics.median(samples) if samples else float("nan"),
        )

    async def m3_start_latency(self, results: Results) -> None:
        out = self.out("m3")
        for _ in range(self.sizes.m3):
            t0 = time.time()
            response = await self.raw.request(
                "POST", f"{self.run_path}?wait=10", {"t0": t0, "out": str(out)}
            )
            assert response.status_code in (200, 201, 202), response.text
            await self.settle()
        samples = [
            (float(started) - float(t0)) * 1000
            for t0, started in (line.split() for line in out.read_text().splitlines())
        ]
        results.add("M3 trigger->body start", n=len(samples), **percentiles(samples))

    async def m4_completion(self, results: Results) -> None:
        out = self.out("m4")
        start = time.perf_counter()
        connections = [Connection("127.0.0.1", self.server.port) for _ in range(self.sizes.m4)]
        responses = await asyncio.gather(*(self.trigger(out, connection=c) for c in connections))
        for connection in connections:
            await connection.close()
        ids = {r.json()["flow_run_id"] for r in responses if r.status_code == 201}
        await self.settle()
        elapsed = time.perf_counter() - start
        started = len(out.read_text().splitlines()) if out.exists() else 0
        results.add(
            "M4 completion throughput",
            runs=len(ids),
            started=started,
            seconds=elapsed,
            runs_per_s=len(ids) / elapsed,
        )

    async def m5_memory(self, results: Results) -> None:
        await self.settle()
        await asyncio.sleep(1)
        results.add("M5 idle memory (tree)", **tree_memory_mb(self.server.process.pid))

    async def m6_health(self, results: Results) -> None:
        for route in ("health", "run_count"):
            samples = []
            for _ in range(self.sizes.m6):
                path = f"/{route}"
                ms, response = await timed(lambda path=path: self.raw.request("GET", path))
                assert response.status_code == 200
                samples.append(ms)
            results.add(f"M6 GET /{route}", n=len(samples), **percentiles(samples))

    async def floors(self, results: Results, database_url: str) -> None:
        """The route and commit floors, beside M6 and with the runner idle."""
        runner_cpus = os.sched_getaffinity(self.server.process.pid)
        results.add(ROUTE, **await route_floor(self.sizes.m6, runner_cpus))
        commit = await asyncio.to_thread(commit_floor, database_url, self.sizes.floors)
        results.add(COMMIT, **commit)

    async def m7_flow_run(self, results: Results) -> None:
        samples, codes = [], {}
        for i in range(self.sizes.m7):
            body = {
                "entrypoint": f"{FLOW_FILE}:touch",
                "parameters": {"t0": float(i), "out": str(self.out("m7"))},
            }
            ms, response = await timed(
                lambda body=body: self.raw.request("POST", "/flow/run", body)
            )
            samples.append(ms)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
        results.add("M7 POST /flow/run", n=len(samples), statuses=codes, **percentiles(samples))
        await self.settle()


@dataclass
class Options:
    database_url: str | None
    sizes: Sizes
    limit: int
    client_cpu: str


async def run_http_metrics(options: Options, results: Results, work: Path) -> None:
    from scale import fresh_database

    with fresh_database(options.database_url, work, "http") as url:
        await _run_http_metrics(url, options, results, work)
    with fresh_database(options.database_url, work, "refusals") as url:
        await _run_refusal_metrics(url, options, results, work)


async def run_m2_metrics(options: Options, results: Results, work: Path) -> None:
    """M2 alone, accepted then refused: the two rates side by side, in a minute or so."""
    from scale import fresh_database

    with fresh_database(options.database_url, work, "http") as url:
        server = Server(work / "home", url, options.limit)
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                await server.wait_ready(client)
                bench = Bench(server, client, options.sizes, work)
                await bench.find_deployment()
                with client_placed(server, options.client_cpu, results):
                    await bench.m2_throughput(results)
        finally:
            server.stop()
    with fresh_database(options.database_url, work, "refusals") as url:
        await _run_refusal_metrics(url, options, results, work)


async def _run_refusal_metrics(
    database_url: str, options: Options, results: Results, work: Path
) -> None:
    server = Server(work / "home-refusals", database_url, 1, backlog_limit=REFUSAL_BACKLOG)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await server.wait_ready(client)
            bench = Bench(server, client, options.sizes, work)
            await bench.find_deployment()
            with client_placed(server, options.client_cpu, results):
                await bench.m2_refusals(results)
    finally:
        server.stop()


@contextlib.contextmanager
def client_placed(server: Server, placement: str, results: Results) -> Iterator[None]:
    """Where the load generator runs while it measures.

    "runner": on the CPU the runner holds its threads to. Flow runs then
    have the other CPUs to themselves, and cannot delay the load generator
    itself (as they could not delay a client on another machine); the runner
    pays for the load generator's CPU instead. "any": wherever the kernel puts it.
    """
    before = os.sched_getaffinity(0)
    runner_cpus = os.sched_getaffinity(server.process.pid)
    pinned = placement == "runner" and len(runner_cpus) == 1 and runner_cpus < before
    if pinned:
        os.sched_setaffinity(0, runner_cpus)
    results.add(
        "load generator", cpus=",".join(map(str, sorted(runner_cpus if pinned else before)))
    )
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


async def _run_http_metrics(
    database_url: str, options: Options, results: Results, work: Path
) -> None:
    server = Server(work / "home", database_url, options.limit)
    sizes = options.sizes
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            await server.wait_ready(client)
            with client_placed(server, options.client_cpu, results):
                await _measure(Bench(server, client, sizes, work), database_url, results)
    finally:
        server.stop()


async def _measure(bench: Bench, database_url: str, results: Results) -> None:
    from scale import many_runs_metrics

    await bench.find_deployment()
    await bench.m5_memory(results)
    await bench.m6_health(results)
    await bench.floors(results, database_url)
    await bench.m1_trigger_latency(results)
    await bench.m3_start_latency(results)
    await bench.m2_throughput(results)
    await bench.m4_completion(results)
    await bench.m7_flow_run(results)
    await many_runs_metrics(bench, database_url, bench.sizes, results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temporary home")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=8, help="the runner's process limit")
    parser.add_argument(
        "--client-cpu",
        choices=["runner", "any"],
        default="runner",
        help="where the load generator runs: on the runner's CPU (default) or anywhere",
    )
    parser.add_argument(
        "--only",
        choices=["all", "m2"],
        default="all",
        help="m2: only M2's accepted and refused (429) rates, without the other metrics",
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    options = Options(args.database_url, sizes, args.limit, args.client_cpu)
    results = Results(database="postgresql" if args.database_url else "sqlite")
    work = Path(tempfile.mkdtemp(prefix="headrace-bench-"))
    print(f"headrace benchmark on {results.database} ({'quick' if args.quick else 'full'})")
    try:
        if args.only == "m2":
            asyncio.run(run_m2_metrics(options, results, work))
        else:
            results.add("import headrace", **import_time())
            results.add(FORK, **fork_floor(sizes.floors))
            asyncio.run(run_http_metrics(options, results, work))
            from scale import run_scale_metrics

            asyncio.run(run_scale_metrics(args.database_url, sizes, results, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    add_ratios(results)
    if args.json_out:
        args.json_out.write_text(json.dumps(results.metrics, indent=2, default=str))
        print(f"wrote {args.json_out}")


def import_time() -> dict[str, float]:
    samples = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import headrace"], check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return {"best_ms": min(samples), "median_ms": statistics.median(samples)}


if __name__ == "__main__":
    main()

"""`headrace serve` in a child process of the benchmark, and what it holds in memory."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
FLOW_FILE = HERE / "flow.py"
START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`headrace serve` in a child process, with its own HEADRACE_HOME."""

    def __init__(
        self,
        home: Path,
        database_url: str | None,
        limit: int,
        backlog_limit: int = 100_000,
        *,
        metrics: bool = True,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "HEADRACE_HOME": str(home),
            "HEADRACE_RUNNER_BACKLOG_LIMIT": str(backlog_limit),
            "HEADRACE_RUNNER_SHUTDOWN_GRACE_SECONDS": "1",
            "HEADRACE_METRICS_ENABLED": str(metrics).lower(),
        }
        env["HEADRACE_RUNNER_PIN_CPU"] = "true"  # as measured: the client shares the runner's CPU
        env.pop("HEADRACE_API_KEY", None)
        if database_url:
            env["HEADRACE_DATABASE_URL"] = database_url
        command = [sys.executable, "-m", "headrace", "serve", f"{FLOW_FILE}:touch"]
        command += ["--name", "bench", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--limit", str(limit)]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"headrace serve exited with {self.process.returncode}")
            try:
                if (await client.get(f"{self.url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("headrace serve did not become healthy in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tree_memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    todo, tree = [pid], []
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    rss = pss = 0
    for member in tree:
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "processes": len(tree)}

"""Starting and stopping a run's process: the strategy, and the handle it returns.

The default starter forks each run from a warm fork server that has already
imported headrace's engine (and, optionally, the served flows' modules), so a
run starts in milliseconds rather than paying a fresh interpreter's imports.
Every run still gets a process, and a process group, of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

from headrace.engine import ChildJob, run_child

logger = logging.getLogger(__name__)

DEFAULT_KILL_GRACE_SECONDS = 5.0
PRELOAD = ("headrace.engine", "headrace.flows", "headrace.parameters", "headrace.entrypoints")
"""Imported once by the fork server, so no run pays for them."""


class ChildProcess:
    """One running flow-run process: its events pipe, its exit, and how to kill it."""

    def __init__(self, process: Any, events: Connection) -> None:
        self._process = process
        self.events = events
        self.pid: int = process.pid
        self._exited = asyncio.get_running_loop().create_future()
        self._watch_exit()

    def _watch_exit(self) -> None:
        loop = asyncio.get_running_loop()
        sentinel = self._process.sentinel

        def on_exit() -> None:
            loop.remove_reader(sentinel)
            self._process.join(0)
            if not self._exited.done():
                self._exited.set_result(self._process.exitcode)

        loop.add_reader(sentinel, on_exit)

    async def wait(self) -> int:
        """The exit code once the process has ended: negative for a signal, as in subprocess."""
        return int(await asyncio.shield(self._exited))

    @property
    def exitcode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    def signal_group(self, signum: int) -> None:
        """Signal the run's whole process group (it called setsid, so its pgid is its pid)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def kill(self, grace_seconds: float = DEFAULT_KILL_GRACE_SECONDS) -> int:
        """SIGTERM the group, then SIGKILL it if the process outlives the grace period."""
        if self.exitcode is None:
            self.signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), timeout=grace_seconds)
            except TimeoutError:
                self.signal_group(signal.SIGKILL)
        code = await self.wait()
        self.signal_group(signal.SIGKILL)  # stragglers the run left in its group
        return code


class ProcessStarter(Protocol):
    """How a run's process is started."""

    def start(self, job: ChildJob) -> ChildProcess: ...

    def close(self) -> None: ...


PROCESS_NAME_PREFIX = "headrace-run-"


def _keep_main_module_out_of_runs() -> None:
    """Stop multiprocessing from re-importing ``__main__`` in every run's process.

    Spawn-style start methods re-run the parent's main script in the child so
    pickled functions defined there resolve. A run loads its flow from its
    entrypoint instead, so for run processes (and only those) this is pure
    cost, and harmful when the main script serves flows without an
    ``if __name__ == "__main__"`` guard.
    """
    from multiprocessing import spawn

    original = spawn.get_preparation_data
    if getattr(original, "headrace_patched", False):
        return

    def get_preparation_data(name: str) -> dict[str, Any]:
        data: dict[str, Any] = original(name)
        if name.startswith(PROCESS_NAME_PREFIX):
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        return data

    get_preparation_data.headrace_patched = True  # type: ignore[attr-defined]
    spawn.get_preparation_data = get_preparation_data


class ForkServerStarter:
    """Forks runs from a warm server process that has the engine already imported."""

    def __init__(self, entrypoints: Sequence[str] = ()) -> None:
        _keep_main_module_out_of_runs()
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([*PRELOAD, "headrace._preload"])
        self._entrypoints = list(entrypoints)

    def warm_up(self) -> None:
        """Start the fork server now instead of on the first run."""
        from multiprocessing import forkserver

        from headrace._preload import PRELOAD_VARIABLE

        # The fork server inherits this environment; it is read once, at its start.
        os.environ[PRELOAD_VARIABLE] = os.pathsep.join(self._entrypoints)
        forkserver.ensure_running()

    def start(self, job: ChildJob) -> ChildProcess:
        receiver, sender = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_child,
            args=(job, sender),
            name=f"{PROCESS_NAME_PREFIX}{job.flow_run_name}",
        )
        try:
            process.start()
        finally:
            sender.close()
        return ChildProcess(process, receiver)

    def close(self) -> None:
        return None

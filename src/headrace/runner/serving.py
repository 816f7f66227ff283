"""Serving: a process whose main job is a runner, from start to drained stop.

``serve()`` (and ``Flow.serve``) and ``headrace serve`` take one path: make
the runner (checking first that its webserver could listen), register what it
serves, ``serve_until_stopped``, all under ``run_serving``, which tunes the
interpreter. The tuning is applied only by the entry points that own their
process, never on import:

- The runner's event loop and its store thread share the GIL. With Python's
  default 5 ms switch interval, a finished database write can wait that long
  to hand its result back to the loop; 0.2 ms keeps a trigger's answer quick
  at the cost of a little throughput.
- With ``HEADRACE_RUNNER_PIN_CPU=true``, both threads stay on one CPU. Python
  runs one of them at a time anyway, and when the kernel spreads them over two
  CPUs every hand-off between them is a wake-up across CPUs: on 2 cores, six
  benchmark runs gave a median trigger under load of 1.6-3.4 ms spread and
  0.9-2.7 ms held together. Runs are not
  held to that CPU: the fork server takes back every CPU the process was
  allowed (``RUN_CPUS_VARIABLE``). It is off by default: every serving
  process would pick the same CPU, and several on one host would share it.
- The soft open-file limit is raised to the hard one: every connection to
  the webserver and every pipe of a run is an open file.
- uvloop, when installed (the ``fast`` extra), runs the loop.
- A database that is behind is migrated in a child process, so Alembic does
  not stay in memory for the life of the process.
- The heap is frozen once the runner is up: a full garbage collection of
  everything imported at start (web stack, SQLAlchemy, pydantic, the flows)
  takes tens of milliseconds and stalls every request in flight, and those
  objects live as long as the process anyway.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import resource
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from headrace.deployments import RunnerDeployment
from headrace.exceptions import HeadraceError
from headrace.logconfig import configure_logging
from headrace.process.protocol import RUN_CPUS_VARIABLE
from headrace.runner.console import RunConsole, banner, say_line
from headrace.runner.runner import Runner
from headrace.runner.signals import on_stop
from headrace.settings import load_settings
from headrace.store.migrate import migrate_in_child_process

T = TypeVar("T")

logger = logging.getLogger(__name__)

SWITCH_INTERVAL_SECONDS = 0.0002
READY_POLL_SECONDS = 0.05


def serve(
    *deployments: RunnerDeployment,
    limit: int | None = None,
    webserver: bool = False,
    **runner_options: Any,
) -> None:
    """Serve several deployments from one runner until Ctrl-C or SIGTERM (blocks).

    Logs (and every run's output, prefixed with its name) go to the console
    unless the application configured logging itself; a banner names each
    deployment and its trigger, and a line tells each run's start and end.
    """
    settings = runner_options["settings"] = runner_options.get("settings") or load_settings()
    configure_logging(log_format=settings.log_format)

    async def main() -> None:
        runner = runner_for_serving(limit=limit, webserver=webserver, **runner_options)
        for deployment in deployments:
            await runner.add_deployment(deployment)
        as_records = settings.log_format == "json"
        runner.observers.append(RunConsole(runner.deployments, as_records=as_records))

        def ready() -> None:
            served = runner.deployments.values()
            for line in banner(served, runner.settings, webserver=runner.webserver):
                say_line(line, as_record=as_records)

        await serve_until_stopped(runner, ready, freeze_heap=True)

    run_serving(main(), pin_cpu=settings.runner_pin_cpu)


def runner_for_serving(**runner_options: Any) -> Runner:
    """A ``Runner``, once it is sure its webserver (if any) could listen.

    Checked before any deployment is written: a serve that cannot bind must
    leave the store as it found it (a running runner may serve the same
    deployment).
    """
    runner = Runner(**runner_options)
    if runner.webserver:
        from headrace.runner.server import check_can_listen  # the web stack, only when it serves

        check_can_listen(runner.settings)
    return runner


async def serve_until_stopped(
    runner: Runner, on_ready: Callable[[], None] = lambda: None, *, freeze_heap: bool = False
) -> None:
    """Start the runner, call ``on_ready`` once it serves, and return when it has stopped.

    "Serves": it has polled, its webserver (if any) listens and its loops run,
    so whoever is told it is ready can trigger at once. ``freeze_heap``: then
    (before ``on_ready``) freeze what start-up made, in a process that serves
    and does nothing else.

    A SIGTERM or Ctrl-C that lands before the runner handles signals itself is
    remembered and honoured once it is up, so an early signal still drains.
    """
    early: list[signal.Signals] = []
    with on_stop(early.append, enabled=runner.handle_signals):
        task = asyncio.create_task(runner.start())
        try:
            while not runner.is_serving and not task.done():  # noqa: ASYNC110 (no event)
                await asyncio.sleep(READY_POLL_SECONDS)
            if not task.done():
                if freeze_heap:
                    gc.collect()
                    gc.freeze()
                on_ready()
            if early:
                await runner.stop()
            await task
        except OSError as exc:
            raise HeadraceError(f"Cannot serve: {exc}") from exc


def run_serving(
    main: Coroutine[Any, Any, T], *, pin_cpu: bool = False, migrate_in_child: bool = True
) -> T:
    """Run a serving process's main coroutine: tuned, on uvloop when it is installed."""
    tune_for_serving(pin_cpu=pin_cpu, migrate_in_child=migrate_in_child)
    try:
        import uvloop  # optional (the ``fast`` extra)
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def tune_for_serving(*, pin_cpu: bool = False, migrate_in_child: bool = True) -> None:
    """Tune the interpreter for serving (see the module's docstring for why)."""
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    raise_open_file_limit()
    if pin_cpu:
        pin_to_one_cpu()
    if migrate_in_child:
        migrate_in_child_process()  # Alembic would stay in memory as long as we serve


def raise_open_file_limit() -> None:
    """Raise the soft open-file limit to the hard one: connections and runs' pipes are files.

    The soft limit is often 1,024 while the hard one is far higher; a process
    that serves may take what it is allowed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # an unlimited hard limit is beyond what the kernel allows
        logger.warning("Could not raise the open-file limit above %d", soft)


def pin_to_one_cpu() -> None:
    """Hold this process (and the threads it starts) to one of the CPUs it may use.

    Call it before starting threads: they inherit it. Children are told, in
    ``RUN_CPUS_VARIABLE``, which CPUs they may take back.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return
    os.environ[RUN_CPUS_VARIABLE] = json.dumps(allowed)
    os.sched_setaffinity(0, {allowed[-1]})  # the last: the first tends to take the interrupts

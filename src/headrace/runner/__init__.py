"""The runner: serve deployments and execute their runs in child processes."""

from __future__ import annotations

from typing import Any

from headrace.console import configure_logging
from headrace.deployments import RunnerDeployment
from headrace.runner.runner import Runner
from headrace.runner.tuning import run_serving


def serve(
    *deployments: RunnerDeployment,
    limit: int | None = None,
    webserver: bool = False,
    **runner_options: Any,
) -> None:
    """Serve several deployments from one runner until Ctrl-C or SIGTERM (blocks).

    Logs (and every run's output, prefixed with its name) go to the console
    unless the application configured logging itself.
    """
    configure_logging()

    async def main() -> None:
        runner = Runner(limit=limit, webserver=webserver, **runner_options)
        for deployment in deployments:
            await runner.add_deployment(deployment)
        await runner.start()

    run_serving(main())


__all__ = ["Runner", "serve"]

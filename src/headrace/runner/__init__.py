"""The runner: serve deployments and execute their runs in child processes."""

from __future__ import annotations

from typing import Any

from headrace.deployments import RunnerDeployment
from headrace.logconfig import configure_logging
from headrace.runner.runner import Runner
from headrace.runner.serving import run_serving
from headrace.settings import load_settings


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
    settings = runner_options["settings"] = runner_options.get("settings") or load_settings()

    async def main() -> None:
        runner = Runner(limit=limit, webserver=webserver, **runner_options)
        if runner.webserver:
            from headrace.runner.server import check_can_listen

            check_can_listen(settings)  # before any deployment is written
        for deployment in deployments:
            await runner.add_deployment(deployment)
        await runner.start()

    run_serving(main(), pin_cpu=settings.runner_pin_cpu)


__all__ = ["Runner", "serve"]

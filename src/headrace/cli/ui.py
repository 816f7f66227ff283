"""What ``headrace ui`` does: open the configured database and serve the dashboard over it."""

from __future__ import annotations

import asyncio
import contextlib

from rich.console import Console
from rich.text import Text

from headrace.settings import Settings


def serve_ui(settings: Settings, console: Console) -> None:
    """Serve until Ctrl-C or SIGTERM; the runs it creates are run by the serving runners."""
    from headrace.runner.server.dashboard_server import serve_dashboard
    from headrace.runner.server.hosts import is_loopback
    from headrace.store import open_store

    store = open_store(settings)
    if not settings.api_key and not is_loopback(settings.runner_server_host):
        console.print(
            Text(
                f"Warning: listening on {settings.runner_server_host!r} without an API key: "
                "anyone who can reach it can see every run and start or cancel runs. Set "
                "HEADRACE_API_KEY, or bind localhost.",
                style="yellow",
            )
        )

    def ready(url: str) -> None:
        line = Text.assemble("Dashboard: ", (f"{url}/ui/", "cyan"))
        if settings.api_key:
            line.append(" (log in with HEADRACE_API_KEY)")
        line.append(" · Ctrl-C to stop", style="dim")
        console.print(line)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_dashboard(store, settings, ready))
    finally:
        store.close()

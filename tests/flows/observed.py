"""Flows for the runner's logs and traces: a line to find in the log, the trace it ran in."""

from __future__ import annotations

import os

from headrace import flow


@flow
def says(words: str = "hello") -> str:
    """Prints one line: a log collector finds it by the run's fields."""
    print(f"the run says {words}", flush=True)
    return words


@flow
def traceparent() -> str | None:
    """The W3C trace context the run was started in, as the programs it starts see it."""
    return os.environ.get("TRACEPARENT")

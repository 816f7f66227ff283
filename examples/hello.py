"""The quickstart flow: `headrace serve examples/hello.py:hello`."""

from __future__ import annotations

import datetime

from headrace import flow


@flow(retries=1)
def hello(name: str = "world", day: datetime.date | None = None) -> str:
    """Greets someone, on a given day."""
    greeting = f"Hello, {name}! ({day or datetime.date.today()})"
    print(greeting)
    return greeting

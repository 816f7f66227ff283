"""The flow the browser tests serve: a parameter of each kind the run form draws, log
lines while it runs, and a result."""

from __future__ import annotations

import enum
import time
from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field

from headrace import flow


class Mode(enum.Enum):
    FULL = "full"
    QUICK = "quick"


class Limits(BaseModel):
    rows: int = Field(1000, description="Rows per batch at most")
    ratio: float = 0.5


@flow
def report(
    title: Annotated[str, Field(description="Shown at the top of the report")],
    day: date = date(2026, 12, 1),
    mode: Mode = Mode.QUICK,
    regions: list[str] = ["eu", "us"],  # noqa: B006
    notify: bool = False,
    limits: Limits = Limits(),  # noqa: B008
    note: str = "started",
    seconds: float = 0,
) -> dict[str, object]:
    """Builds a weekly report and logs each step (the title "fail" makes it fail)."""
    print(note, flush=True)
    if title == "fail":
        raise RuntimeError("The report source is unreachable")
    deadline = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < deadline:
        tick += 1
        print(f"tick {tick}", flush=True)
        time.sleep(0.2)
    return {"title": title, "day": day.isoformat(), "mode": mode.value, "regions": regions}

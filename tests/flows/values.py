"""Flows returning and printing values that are awkward to store, for child-process tests."""

from __future__ import annotations

import dataclasses
import enum
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from headrace import flow

WAIT_SECONDS = 20.0


class Point(BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


class Colour(enum.Enum):
    RED = "red"


@flow
def typed_values() -> dict[str, Any]:
    """Values json.dumps cannot encode but pydantic can."""
    return {
        "when": datetime(2026, 1, 31, 12, 30, tzinfo=UTC),
        "amount": Decimal("1.10"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
        "point": Point(x=1, y=2),
        "reading": Reading("t1", 20.5),
        "colour": Colour.RED,
        "pair": (1, 2),
    }


@flow
def a_datetime() -> datetime:
    return datetime(2026, 1, 31, tzinfo=UTC)


@flow
def a_model() -> Point:
    return Point(x=3, y=4)


@flow
def nested_object() -> dict[str, object]:
    return {"fine": 1, "not fine": object()}


@flow
def sized_result(size: int = 100_000) -> str:
    return "x" * size


@flow
def nul_and_surrogate(value: Any = None) -> dict[str, Any]:
    """Logs, prints and returns NUL and an unpaired surrogate; returns its parameter too."""
    logging.getLogger(__name__).warning("logged a\x00b \ud800 end")
    print("printed a\x00b end", flush=True)
    return {"value": value, "made": "a\x00b\udc00c", "a\x00key": 1}


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


@flow
def steady_talker(marker: str, lines: int = 40) -> int:
    """Prints a line every 10 ms; ``marker`` appears after its tenth, for the other run."""
    for number in range(lines):
        print(f"steady line {number}", flush=True)
        if number == 10:
            Path(marker).touch()
        time.sleep(0.01)
    return lines


@flow
def nul_printer(marker: str) -> str:
    """Prints a line with a NUL in it while ``steady_talker`` is printing."""
    _wait_for(Path(marker))
    print("bad \x00 line", flush=True)
    return "done"

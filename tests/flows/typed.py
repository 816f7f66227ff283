"""A flow whose parameters are typed beyond JSON: a model, a date, an enum, a UUID, a float."""

from __future__ import annotations

import enum
from datetime import date
from uuid import UUID

from pydantic import BaseModel

from headrace import flow


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Window(BaseModel):
    start: date
    days: int = 1


@flow
def typed(
    window: Window, day: date, colour: Colour, ident: UUID, delay: float = 0.0
) -> dict[str, str]:
    """What the run received, as type and value: the types must be the flow's own."""
    return {
        "window": f"{type(window).__name__}({window.start!r}, {window.days})",
        "day": repr(day),
        "colour": repr(colour),
        "ident": repr(ident),
        "delay": repr(delay),
    }

"""Flows for the webserver's tests: a nested-model parameter, and an import space to check.

``complex_flow`` and ``double`` are served (their module is a deployment's
entrypoint module); ``imported_flow`` is managed too, because this module
imports it; ``tests.flows.imported:not_imported`` is not.
"""

from __future__ import annotations

from pydantic import BaseModel

from headrace import flow
from tests.flows.imported import imported_flow


class Point(BaseModel):
    x: int
    y: int


class Shape(BaseModel):
    name: str
    points: list[Point]


@flow
def complex_flow(shape: Shape, scale: float = 1.0) -> dict[str, object]:
    """Sums the coordinates of a shape's points, scaled."""
    total = sum(point.x + point.y for point in shape.points) * scale
    return {"name": shape.name, "points": len(shape.points), "total": total}


@flow
def double(x: int) -> int:
    print(f"doubling {x}")
    return 2 * x


__all__ = ["complex_flow", "double", "imported_flow"]

"""What the benchmark measured: printed as it goes, and kept for --json-out."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Results:
    database: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    quiet: bool = False

    def add(self, key: str, **values: Any) -> None:
        self.metrics[key] = values
        if self.quiet:
            return
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        print(f"  {key:<28} {shown}", flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):  # a query plan: its lines shortened for the table (JSON has all)
        return str([line if len(line) <= 120 else line[:117] + "..." for line in map(str, value)])
    return str(value)


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "p50_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))],
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_ms": ordered[-1],
    }

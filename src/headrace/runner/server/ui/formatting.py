"""How the dashboard writes times, durations, states and values: Jinja filters."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from headrace.flow_runs import FlowRun
from headrace.states import utcnow
from headrace.task_runs import TaskRun

PREVIEW_CHARS = 120


def duration(seconds: float | None) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} d {hours % 24} h"


def run_seconds(run: FlowRun | TaskRun) -> float | None:
    """How long the run ran (so far, while it runs)."""
    if run.start_time is None:
        return None
    end = run.end_time or utcnow()
    return max((end - run.start_time).total_seconds(), 0.0)


def with_bars(
    runs: Sequence[FlowRun | TaskRun],
) -> list[tuple[FlowRun | TaskRun, float | None, str]]:
    """Each run with its duration and its bar's width, in percent of the longest shown."""
    seconds = [run_seconds(run) for run in runs]
    longest = max((s for s in seconds if s is not None), default=0.0)
    return [
        (run, s, f"{min(100.0, max(2.0, 100 * s / longest)) if s and longest else 2.0:.1f}")
        for run, s in zip(runs, seconds, strict=True)
    ]


def ago(when: datetime | None) -> str:
    """``5 s ago``, ``in 3 min``."""
    if when is None:
        return "—"
    seconds = (utcnow() - when).total_seconds()
    magnitude = abs(seconds)
    if magnitude < 1:
        return "now"
    text = f"{magnitude:.0f} s" if magnitude < 60 else duration(magnitude)
    return f"{text} ago" if seconds > 0 else f"in {text}"


def stamp(when: datetime | None) -> str:
    """``2026-12-07 09:45:05 UTC``."""
    return "—" if when is None else when.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(when: datetime | None) -> str:
    return "" if when is None else when.isoformat()


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def first_line(text: str | None) -> str:
    """A message's first line: a failure's error, without its traceback."""
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def state_class(state_type: Any) -> str:
    return f"s-{str(getattr(state_type, 'value', state_type)).lower()}"


FILTERS = {
    "duration": duration,
    "run_seconds": run_seconds,
    "ago": ago,
    "stamp": stamp,
    "iso": iso,
    "pretty_json": pretty_json,
    "preview": preview,
    "state_class": state_class,
    "first_line": first_line,
    "with_bars": with_bars,
}

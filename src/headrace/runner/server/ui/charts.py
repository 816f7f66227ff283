"""Charts as inline SVG, drawn on the server: no chart library, nothing to download.

Every number is formatted here and every label escaped, so a chart is safe to
put into a page as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from headrace.states import StateType

HOURS = 24
FINAL_ORDER = (StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
WIDTH = 960
HEIGHT = 200
HALF_WIDTH = 560
PAD_LEFT = 36
PAD_BOTTOM = 22
PAD_TOP = 8


@dataclass(frozen=True)
class DurationPoint:
    """One ended run on the durations chart."""

    when: datetime
    seconds: float
    state: StateType


def hourly_bars(counts: Mapping[tuple[str, StateType], int], now: datetime) -> Markup:
    """Runs ended per hour over the last ``HOURS`` hours, stacked by final state."""
    hours = [(now - timedelta(hours=HOURS - 1 - i)).strftime("%Y-%m-%d %H") for i in range(HOURS)]
    totals = [sum(counts.get((h, s), 0) for s in FINAL_ORDER) for h in hours]
    top = _nice(max(totals, default=0))
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    step = plot_w / HOURS
    parts = [_open("Runs ended per hour, by final state, last 24 hours"), _y_axis(top, plot_h)]
    for i, hour in enumerate(hours):
        x = PAD_LEFT + i * step + 2
        y = float(PAD_TOP + plot_h)
        for state in FINAL_ORDER:
            n = counts.get((hour, state), 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            label = f"{hour}:00 UTC: {n} {state.value.lower()}"
            parts.append(
                f'<rect class="s-{state.value.lower()}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{step - 4:.1f}" height="{h:.1f}"><title>{escape(label)}</title></rect>'
            )
        if i % 3 == 0:
            parts.append(
                f'<text class="axis" x="{x + (step - 4) / 2:.1f}" y="{HEIGHT - 6}" '
                f'text-anchor="middle">{hour[-2:]}h</text>'
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def duration_dots(points: Sequence[DurationPoint], width: int = HALF_WIDTH) -> Markup:
    """Each ended run's duration over time, oldest left, coloured by final state (drawn for
    half a page's width: its text stays readable there)."""
    parts = [_open("Run durations over time", width)]
    if not points:
        parts.append(
            f'<text class="axis" x="{width / 2}" y="{HEIGHT / 2}" text-anchor="middle">'
            "No ended runs yet</text></svg>"
        )
        return Markup("".join(parts))
    top = _nice(max(p.seconds for p in points))
    plot_w, plot_h = width - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    first, last = points[0].when, points[-1].when
    span = max((last - first).total_seconds(), 1e-9)
    parts.append(_y_axis(top, plot_h, unit="s", width=width))
    line = []
    for p in points:
        x = (
            PAD_LEFT
            + 4
            + plot_w * ((p.when - first).total_seconds() / span if len(points) > 1 else 0.5)
        )
        y = PAD_TOP + plot_h - plot_h * p.seconds / top
        line.append(f"{x:.1f},{y:.1f}")
        label = f"{p.when:%Y-%m-%d %H:%M:%S} UTC: {p.seconds:.2f} s, {p.state.value.lower()}"
        parts.append(
            f'<circle class="s-{p.state.value.lower()}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
            f"<title>{escape(label)}</title></circle>"
        )
    parts.insert(2, f'<polyline class="trend" points="{" ".join(line)}"/>')
    for x, text in ((PAD_LEFT + 4, f"{first:%m-%d %H:%M}"), (width - 8, f"{last:%m-%d %H:%M}")):
        anchor = "start" if x < width / 2 else "end"
        parts.append(
            f'<text class="axis" x="{x}" y="{HEIGHT - 6}" text-anchor="{anchor}">{text}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def _open(title: str, width: int = WIDTH) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )


def _y_axis(top: float, plot_h: float, unit: str = "", width: int = WIDTH) -> str:
    parts = []
    for fraction in (0, 0.5, 1):
        y = PAD_TOP + plot_h - plot_h * fraction
        value = top * fraction
        text = f"{value:g}{unit}" if value < 100 else f"{value:.0f}{unit}"
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        )
    return "".join(parts)


def _nice(value: float) -> float:
    """A round top for an axis at or above ``value`` (1, 2, 5 times a power of ten)."""
    if value <= 0:
        return 1
    scale = 1.0
    while scale * 10 <= value:
        scale *= 10
    while scale > value:
        scale /= 10
    for step in (1, 2, 5, 10):
        if step * scale >= value:
            return step * scale
    return 10 * scale

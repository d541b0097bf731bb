"""Latency and availability chart of a DICOM node, drawn on the server as SVG (no JS, no CDN).

Only presentation attributes (fill, stroke...) are used: the CSP forbids inline styles.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from statistics import median

from markupsafe import Markup, escape

from core.timeutil import format_local

WIDTH, HEIGHT = 720, 184
LEFT, RIGHT, TOP = 56, 16, 14
PLOT_H = 120
STRIP_Y = TOP + PLOT_H + 12
STRIP_H = 14
AXIS_Y = STRIP_Y + STRIP_H + 16
OK_COLOUR, FAIL_COLOUR, LINE_COLOUR = "#198754", "#dc3545", "#0d6efd"
DEGRADED_COLOUR, EMPTY_COLOUR = "#fd7e14", "#f8f9fa"
# The availability strip is drawn in this many equal slices of the period: a slice with one failed
# check is red, one with a slow answer (and no failure) amber, so a single failure shows at 30 days.
SLICES = 144
GRID_COLOUR, TEXT_COLOUR, THRESHOLD_COLOUR = "#dee2e6", "#495057", "#fd7e14"

Point = tuple[datetime, float, bool]  # checked at, latency ms, answered


def _nice_ceiling(value: float) -> float:
    """A round number at or above ``value`` for the latency axis."""
    for step in (10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 60000, 120000):
        if value <= step:
            return float(step)
    return float(value)


def span_words(span: timedelta) -> str:
    """A chart period in words: "24 hours", "7 days"."""
    hours = int(span.total_seconds() // 3600)
    return f"{hours} hours" if hours <= 48 else f"{hours // 24} days"


def _strip(ordered: Sequence[Point], start: datetime, seconds: float, plot_w: float,
           threshold_ms: float) -> list[str]:
    """The availability strip: one rectangle per slice that had checks, coloured by its worst check."""
    slices: dict[int, list[Point]] = {}
    for point in ordered:
        index = min(int((point[0] - start).total_seconds() / seconds * SLICES), SLICES - 1)
        slices.setdefault(max(index, 0), []).append(point)
    width = plot_w / SLICES
    parts = []
    for index, checks in sorted(slices.items()):
        failed = sum(1 for p in checks if not p[2])
        slow = sum(1 for p in checks if p[2] and p[1] > threshold_ms)
        colour = FAIL_COLOUR if failed else DEGRADED_COLOUR if slow else OK_COLOUR
        first, last = checks[0][0], checks[-1][0]
        label = (f"{format_local(first, '%Y-%m-%d %H:%M')} to {format_local(last, '%H:%M')}: "
                 f"{len(checks)} checks, {failed} failed, {slow} slow")
        kind = "failed" if failed else "slow" if slow else "ok"
        parts.append(f'<rect x="{round(LEFT + index * width, 2)}" y="{STRIP_Y}" width="{round(width, 2)}" '
                     f'height="{STRIP_H}" fill="{colour}" class="slice-{kind}">'
                     f'<title>{escape(label)}</title></rect>')
    return parts


def node_chart_svg(points: Sequence[Point], *, end: datetime, span: timedelta,
                   threshold_ms: float) -> Markup:
    """An SVG of latency (line) and availability (strip: green answered, amber slow, red failed)."""
    start = end - span
    plot_w = WIDTH - LEFT - RIGHT
    seconds = span.total_seconds()

    def x(at: datetime) -> float:
        return round(LEFT + plot_w * min(max((at - start).total_seconds() / seconds, 0.0), 1.0), 1)

    answered = [p for p in points if p[2]]
    failed = len(points) - len(answered)
    top_ms = _nice_ceiling(max([p[1] * 1.2 for p in answered] + [10.0]))

    def y(ms: float) -> float:
        return round(TOP + PLOT_H - PLOT_H * min(ms / top_ms, 1.0), 1)

    if points:
        typical = f"median latency {median(p[1] for p in answered):.0f} ms" if answered \
            else "no successful check"
        description = f"{len(points)} checks, {failed} failed, {typical}."
    else:
        description = "No checks in this period."
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" aria-labelledby="node-chart-title node-chart-desc" class="node-chart" '
        f'font-family="system-ui, sans-serif" font-size="11">',
        '<title id="node-chart-title">C-ECHO latency and availability, last '
        f'{span_words(span)}</title>',
        f'<desc id="node-chart-desc">{escape(description)}</desc>',
    ]
    for ms in (0.0, top_ms / 2, top_ms):
        parts.append(f'<line x1="{LEFT}" y1="{y(ms)}" x2="{WIDTH - RIGHT}" y2="{y(ms)}" '
                     f'stroke="{GRID_COLOUR}" stroke-width="1"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(ms) + 4}" text-anchor="end" '
                     f'fill="{TEXT_COLOUR}">{ms:.0f} ms</text>')
    if threshold_ms < top_ms:
        parts.append(f'<line x1="{LEFT}" y1="{y(threshold_ms)}" x2="{WIDTH - RIGHT}" '
                     f'y2="{y(threshold_ms)}" stroke="{THRESHOLD_COLOUR}" stroke-width="1" '
                     f'stroke-dasharray="4 3"><title>Degraded above {threshold_ms:.0f} ms</title>'
                     f'</line>')
    parts.append(f'<rect x="{LEFT}" y="{STRIP_Y}" width="{plot_w}" height="{STRIP_H}" '
                 f'fill="{EMPTY_COLOUR}" stroke="{GRID_COLOUR}"/>')
    ordered = sorted(points, key=lambda p: p[0])
    parts += _strip(ordered, start, seconds, plot_w, threshold_ms)
    segments: list[list[Point]] = [[]]
    for point in ordered:  # the line breaks where a check failed
        if point[2]:
            segments[-1].append(point)
        elif segments[-1]:
            segments.append([])
    for segment in segments:
        if len(segment) > 1:
            coords = " ".join(f"{x(at)},{y(ms)}" for at, ms, _ in segment)
            parts.append(f'<polyline points="{coords}" fill="none" stroke="{LINE_COLOUR}" '
                         f'stroke-width="1.5" stroke-linejoin="round"/>')
        elif segment:
            at, ms, _ = segment[0]
            parts.append(f'<circle cx="{x(at)}" cy="{y(ms)}" r="2.5" fill="{LINE_COLOUR}"/>')
    ticks = 4
    stamp = "%H:%M" if seconds <= 86400 else "%d %b"
    for i in range(ticks + 1):
        at = start + span * i / ticks
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(f'<text x="{x(at)}" y="{AXIS_Y}" text-anchor="{anchor}" fill="{TEXT_COLOUR}">'
                     f'{escape(format_local(at, stamp))}</text>')
    if not points:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + PLOT_H / 2}" text-anchor="middle" '
                     f'fill="{TEXT_COLOUR}" font-size="13">No checks in this period</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, constants and escaped text only

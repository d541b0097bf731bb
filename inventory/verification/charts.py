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
GRID_COLOUR, TEXT_COLOUR, THRESHOLD_COLOUR = "#dee2e6", "#495057", "#fd7e14"

Point = tuple[datetime, float, bool]  # checked at, latency ms, answered


def _nice_ceiling(value: float) -> float:
    """A round number at or above ``value`` for the latency axis."""
    for step in (10, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 60000, 120000):
        if value <= step:
            return float(step)
    return float(value)


def node_chart_svg(points: Sequence[Point], *, end: datetime, span: timedelta,
                   threshold_ms: float) -> Markup:
    """An SVG of latency (line) and availability (strip: green answered, red failed)."""
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
        f'{int(seconds // 3600)} hours</title>',
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
                 f'fill="#f8f9fa" stroke="{GRID_COLOUR}"/>')
    ordered = sorted(points, key=lambda p: p[0])
    for i, (at, latency, ok) in enumerate(ordered):
        following = ordered[i + 1][0] if i + 1 < len(ordered) else min(end, at + timedelta(minutes=5))
        left = x(at)
        width = max(round(x(following) - left, 1), 1.5)
        label = f"{format_local(at, '%Y-%m-%d %H:%M:%S')}: " + \
            (f"answered in {latency:.0f} ms" if ok else "failed")
        parts.append(f'<rect x="{left}" y="{STRIP_Y}" width="{width}" height="{STRIP_H}" '
                     f'fill="{OK_COLOUR if ok else FAIL_COLOUR}"><title>{escape(label)}</title></rect>')
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
    for i in range(ticks + 1):
        at = start + span * i / ticks
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        parts.append(f'<text x="{x(at)}" y="{AXIS_Y}" text-anchor="{anchor}" fill="{TEXT_COLOUR}">'
                     f'{escape(format_local(at, "%H:%M"))}</text>')
    if not points:
        parts.append(f'<text x="{LEFT + plot_w / 2}" y="{TOP + PLOT_H / 2}" text-anchor="middle" '
                     f'fill="{TEXT_COLOUR}" font-size="13">No checks in this period</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, constants and escaped text only

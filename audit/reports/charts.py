"""Charts drawn on the server as SVG, embedded inline in the PDF (no images fetched)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

PALETTE = ("#1f4e79", "#c0504d", "#9bbb59", "#8064a2", "#f79646")


def _nice_max(value: float) -> float:
    """A round axis maximum at or above ``value``."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    """Axis label: whole numbers without decimals."""
    return f"{value:,.0f}" if value == int(value) or value >= 10 else f"{value:.1f}"


def bar_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
              title: str, width: int = 720, height: int = 210, max_labels: int = 16,
              unit: str = "") -> Markup:
    """A stacked bar chart: one bar per label, one colour per series, with a legend."""
    left, right, top, bottom = 48, 10, 22, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(len(labels), 1)
    totals = [sum(s[1][i] for s in series) for i in range(len(labels))]
    y_max = _nice_max(max(totals, default=0))
    if all(float(v).is_integer() for _, values in series for v in values):
        y_max = max(y_max, 4)  # counts: whole-number gridlines
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
             f'width="{width}" height="{height}" font-family="DejaVu Sans" font-size="9" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="12" font-size="10" font-weight="bold">{escape(title)}</text>']
    for i in range(5):
        value = y_max * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" '
                     f'stroke="#ddd" stroke-width="0.6"/>')
        parts.append(f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">'
                     f'{_fmt(value)}{escape(unit)}</text>')
    slot = plot_w / n
    bar = max(slot * 0.75, 0.8)
    every = max(1, math.ceil(n / max_labels))
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar) / 2
        base: float = top + plot_h
        for k, (_, values) in enumerate(series):
            h = plot_h * values[i] / y_max if y_max else 0
            if h > 0:
                parts.append(f'<rect x="{x:.2f}" y="{base - h:.2f}" width="{bar:.2f}" '
                             f'height="{h:.2f}" fill="{PALETTE[k % len(PALETTE)]}"/>')
            base -= h
        if i % every == 0:
            cx = left + i * slot + slot / 2
            parts.append(f'<text x="{cx:.1f}" y="{top + plot_h + 12}" text-anchor="middle" '
                         f'font-size="7.5">{escape(label)}</text>')
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
                 f'stroke="#333" stroke-width="0.8"/>')
    x = left
    for k, (name, _) in enumerate(series):
        if len(series) < 2:
            break
        parts.append(f'<rect x="{x}" y="{height - 11}" width="8" height="8" '
                     f'fill="{PALETTE[k % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 11}" y="{height - 4}">{escape(name)}</text>')
        x += 16 + 6 * len(name)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every text above went through escape()

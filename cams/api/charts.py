"""Charts as server-rendered SVG: the dashboard works with no internet and no JavaScript bundle."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from cams.money import unit_usd, usd

PALETTE = ["#4f46e5", "#0891b2", "#16a34a", "#ca8a04", "#9333ea", "#db2777", "#475569", "#0d9488", "#ea580c"]


def _label(v: float, unit: str) -> str:
    """A value with its unit; dollars the way every page writes them (cams/money.py)."""
    if unit.strip() == "$":
        return escape(usd(v) if abs(v) >= 1 or v == 0 else unit_usd(v))
    return f"{_num(v)}{escape(unit)}"


def _num(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}"
    return f"{v:.4f}"


def nice_step(raw: float) -> float:
    """A round tick step at or above `raw`: 1, 2, 2.5 or 5 times a power of ten."""
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))


def hbars(
    rows: Sequence[tuple[str, float]],
    title: str,
    unit: str = "",
    width: int = 640,
    highlight: str | None = None,
    marks: dict[str, float] | None = None,
) -> str:
    """Horizontal bars, one per (label, value); `marks` draws a tick per label (e.g. a forecast)."""
    bar_h, gap, left = 22, 8, 210
    height = 30 + len(rows) * (bar_h + gap) + 10
    top = max([v for _, v in rows] + list((marks or {}).values()) + [1e-12])
    scale = (width - left - 90) / top
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="4" y="18" font-size="14" font-weight="600">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(rows):
        y = 30 + i * (bar_h + gap)
        # with a bar to look at, it is red and the rest grey
        color = PALETTE[i % len(PALETTE)] if highlight is None else "#dc2626" if highlight == label else "#94a3b8"
        w = max(1.0, value * scale)
        parts.append(f'<text x="4" y="{y + 15}" font-size="12">{escape(label[:32])}</text>')
        parts.append(
            f'<rect class="bar" data-label="{escape(label)}" data-value="{value}" x="{left}" y="{y}" '
            f'width="{w:.1f}" height="{bar_h}" fill="{color}" rx="3">'
            f"<title>{escape(label)}: {_label(value, unit)}</title></rect>"
        )
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{_label(value, unit)}</text>')
        if marks and label in marks:
            x = left + marks[label] * scale
            parts.append(
                f'<line class="mark" x1="{x:.1f}" x2="{x:.1f}" y1="{y - 3}" y2="{y + bar_h + 3}" stroke="#111" '
                f'stroke-width="2" stroke-dasharray="4 2"><title>forecast {_label(marks[label], unit)}</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)


def lines(
    xs: Sequence[str],
    series: dict[str, Sequence[float]],
    title: str,
    unit: str = "",
    width: int = 640,
    height: int = 260,
) -> str:
    """One line per series over the same x labels (days): a y axis with round ticks and gridlines, and a
    legend wide enough for the series' names."""
    longest = max([len(name) for name in series] + [8])
    left, right, top_pad, bottom = 64, min(260, 34 + 7 * longest), 30, 40
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    step = nice_step(max([max(v) for v in series.values() if len(v)] + [1e-12]) / 4)
    top = step * max(1, math.ceil(max([max(v) for v in series.values() if len(v)] + [1e-12]) / step - 1e-9))
    n = max(len(xs) - 1, 1)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="4" y="18" font-size="14" font-weight="600">{escape(title)}</text>',
    ]
    for k in range(round(top / step) + 1):  # gridlines and labels at round values
        y = top_pad + plot_h - plot_h * (k * step) / top
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
            f'stroke="{"#999" if k == 0 else "#e5e7eb"}"/>'
        )
        parts.append(
            f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end">'
            f"{_label(k * step, unit)}</text>"
        )
    for i, x in enumerate(xs):
        if i in (0, len(xs) - 1) or i % max(1, len(xs) // 6) == 0:
            px = left + plot_w * i / n
            parts.append(
                f'<text x="{px:.1f}" y="{height - 18}" font-size="10" text-anchor="middle">{escape(x[5:])}</text>'
            )
    for j, (name, ys) in enumerate(series.items()):
        color = PALETTE[j % len(PALETTE)]
        pts = " ".join(
            f"{left + plot_w * i / n:.1f},{top_pad + plot_h - plot_h * y / top:.1f}" for i, y in enumerate(ys)
        )
        parts.append(
            f'<polyline class="series" data-name="{escape(name)}" fill="none" stroke="{color}" stroke-width="2" '
            f'points="{pts}"><title>{escape(name)}</title></polyline>'
        )
        ly = top_pad + 14 * j
        parts.append(f'<rect x="{width - right + 10}" y="{ly}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{width - right + 24}" y="{ly + 9}" font-size="11">{escape(name[:32])}</text>')
    parts.append("</svg>")
    return "".join(parts)

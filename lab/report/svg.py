"""Tiny inline-SVG charts for self-contained HTML reports (no plotting dependency): the
sweep's heatmap and histograms, and the n-of-k report's sorted bars, success histogram,
scatter and pass@k curves.

Every label and tooltip passes through html.escape: case ids and model text are untrusted.

    from lab.report.svg import sorted_bars
    svg = sorted_bars([0.1, 0.9], ["a", "b"], {"p5": 0.14, "mean": 0.5})
"""

from __future__ import annotations

import html
import math
from html import escape


def heatmap(
    rows: list[str],
    cols: list[str],
    values: list[list[float | None]],
    title: str,
    fmt: str = "{:.1f}",
) -> str:
    """A rows x cols grid coloured from white (min) to red (max); None cells are grey."""
    cell_w, cell_h, left, top = 90, 32, 160, 50
    # Wide enough for the title too (about 7 px a character at 12 px sans-serif).
    width = max(left + cell_w * len(cols) + 20, left + 7 * len(title))
    height = top + cell_h * len(rows) + 20
    flat = [v for row in values for v in row if v is not None]
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 1.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="18" font-weight="bold">{escape(title)}</text>',
    ]
    for j, col in enumerate(cols):
        parts.append(
            f'<text x="{left + j * cell_w + cell_w / 2}" y="{top - 8}" '
            f'text-anchor="middle">{escape(col)}</text>'
        )
    for i, row in enumerate(rows):
        y = top + i * cell_h
        parts.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4}" text-anchor="end">{escape(row)}</text>'
        )
        for j, v in enumerate(values[i]):
            x = left + j * cell_w
            if v is None:
                fill, label = "#ddd", "-"
            else:
                t = 0.0 if hi == lo else (v - lo) / (hi - lo)
                shade = int(255 - 160 * t)
                fill, label = f"rgb(255,{shade},{shade})", fmt.format(v)
            parts.append(
                f'<rect x="{x}" y="{y}" width="{cell_w - 2}" height="{cell_h - 2}" fill="{fill}"/>'
            )
            parts.append(
                f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" '
                f'text-anchor="middle">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: list[float], bins: int, title: str, x_label: str) -> str:
    """A histogram of values in `bins` equal-width bins."""
    width, height, left, bottom = 520, 220, 40, 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="16" font-weight="bold">{escape(title)}</text>',
    ]
    if not values:
        parts.append(f'<text x="{left}" y="60">no data</text></svg>')
        return "".join(parts)
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / span * bins))] += 1
    plot_w, plot_h = width - left - 10, height - bottom - 30
    bar_w = plot_w / bins
    top_count = max(counts)
    for i, c in enumerate(counts):
        h = plot_h * c / top_count
        x = left + i * bar_w
        parts.append(
            f'<rect x="{x:.1f}" y="{height - bottom - h:.1f}" width="{bar_w - 1:.1f}" '
            f'height="{h:.1f}" fill="#c0392b"><title>{c}</title></rect>'
        )
    parts.append(f'<text x="{left}" y="{height - bottom + 16}">{lo:g}</text>')
    parts.append(
        f'<text x="{width - 10}" y="{height - bottom + 16}" text-anchor="end">{hi:g}</text>'
    )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    parts.append(f'<text x="4" y="{height - bottom - plot_h}">{top_count}</text>')
    parts.append("</svg>")
    return "".join(parts)


W, H = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 40
MARK_COLORS = {"p5": "#c0392b", "p10": "#e67e22", "p50": "#2c3e50", "mean": "#2980b9"}


def _frame(body: str, xlabel: str, ylabel: str, ticks_y: list[float]) -> str:
    ph = H - TOP - BOTTOM
    axis = [
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" stroke="#555"/>',
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" stroke="#555"/>',
    ]
    top = max(ticks_y) if ticks_y else 1.0
    for t in ticks_y:
        y = H - BOTTOM - ph * (t / top if top else 0)
        axis.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>'
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
        )
    axis.append(
        f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" font-size="12" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
    )
    axis.append(
        f'<text x="12" y="{(TOP + H - BOTTOM) / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + H - BOTTOM) / 2})">{html.escape(ylabel)}</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" '
        f'height="{H}" font-family="sans-serif">' + "".join(axis) + body + "</svg>"
    )


def sorted_bars(values: list[float], labels: list[str], marks: dict[str, float]) -> str:
    """Per-case success, sorted ascending, with horizontal lines at the marks (p5, mean...)."""
    order = sorted(range(len(values)), key=lambda i: (values[i], labels[i]))
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = pw / max(len(values), 1)
    parts = []
    for slot, i in enumerate(order):
        h = ph * values[i]
        x = LEFT + slot * bw
        parts.append(
            f'<rect x="{x + 0.5:.1f}" y="{H - BOTTOM - h:.1f}" width="{max(bw - 1, 0.5):.1f}" '
            f'height="{h:.1f}" fill="#7fb3d5"><title>{html.escape(labels[i])}: '
            f"{values[i]:.3f}</title></rect>"
        )
    for offset, (name, value) in enumerate(marks.items()):
        if value is None or not math.isfinite(value):
            continue
        y = H - BOTTOM - ph * value
        color = MARK_COLORS.get(name, "#000")
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" stroke="{color}" '
            f'stroke-width="1.5" stroke-dasharray="5,3"/>'
            # Labels on the left, where the ascending bars are lowest, spread out sideways.
            f'<text x="{LEFT + 6 + 90 * offset}" y="{y - 3:.1f}" font-size="11" '
            f'fill="{color}">{html.escape(name)} {value:.2f}</text>'
        )
    return _frame(
        "".join(parts), "cases, sorted by success", "success rate", [0, 0.25, 0.5, 0.75, 1]
    )


def success_histogram(successes: list[int], k: int, max_bars: int = 20) -> str:
    """Distribution of per-case success counts (0..k passing samples); bars group
    ceil((k + 1) / max_bars) consecutive counts, so no bar straddles an impossible value."""
    group = -(-(k + 1) // max_bars)
    bins = -(-(k + 1) // group)
    counts = [0] * bins
    for c in successes:
        counts[c // group] += 1
    top = max(counts) or 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = pw / bins
    parts = []
    for b, count in enumerate(counts):
        h = ph * count / top
        x = LEFT + b * bw
        lo, hi = b * group, min((b + 1) * group - 1, k)
        span = f"{lo}" if lo == hi else f"{lo}-{hi}"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{H - BOTTOM - h:.1f}" width="{bw - 2:.1f}" height="{h:.1f}" '
            f'fill="#82e0aa"><title>{span} of {k} passing: {count} cases</title></rect>'
        )
    for b in range(0, bins, max(1, bins // 5)):
        parts.append(
            f'<text x="{LEFT + (b + 0.5) * bw:.1f}" y="{H - BOTTOM + 14}" font-size="11" '
            f'text-anchor="middle">{b * group / k:.2g}</text>'
        )
    ticks = sorted({0.0, float(top) / 2, float(top)})
    return _frame("".join(parts), f"per-case success rate ({k} samples per case)", "cases", ticks)


def scatter(xs: list[float], ys: list[float], labels: list[str], xlabel: str, ylabel: str) -> str:
    """One dot per case."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    finite = [x for x in xs if math.isfinite(x)]
    x_hi = max(finite, default=1.0) or 1.0
    x_lo = min(finite, default=0.0)
    span = (x_hi - x_lo) or 1.0
    parts = []
    for x, y, label in zip(xs, ys, labels, strict=True):
        if not math.isfinite(x):
            continue
        cx = LEFT + pw * (x - x_lo) / span
        cy = H - BOTTOM - ph * y
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#8e44ad" fill-opacity="0.6">'
            f"<title>{html.escape(label)}: {html.escape(xlabel)} {x:.3f}, "
            f"{html.escape(ylabel)} {y:.3f}</title></circle>"
        )
    for t in (x_lo, (x_lo + x_hi) / 2, x_hi):
        parts.append(
            f'<text x="{LEFT + pw * (t - x_lo) / span:.1f}" y="{H - BOTTOM + 14}" font-size="11" '
            f'text-anchor="middle">{t:.2f}</text>'
        )
    return _frame("".join(parts), xlabel, ylabel, [0, 0.5, 1])


def curves(ks: list[int], series: dict[str, list[float]]) -> str:
    """pass@k and pass^k against k (log2 spacing)."""
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    xs = [math.log2(k) for k in ks]
    x_hi = max(xs) or 1.0
    colors = ["#27ae60", "#c0392b", "#2980b9"]
    parts = []
    for n, (name, ys) in enumerate(series.items()):
        points = [
            (LEFT + pw * x / x_hi, H - BOTTOM - ph * y)
            for x, y in zip(xs, ys, strict=True)
            if y is not None and math.isfinite(y)
        ]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        color = colors[n % len(colors)]
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.extend(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}"/>' for px, py in points
        )
        parts.append(
            f'<text x="{LEFT + 8}" y="{TOP + 14 + 14 * n}" font-size="12" fill="{color}">'
            f"{html.escape(name)}</text>"
        )
    for k, x in zip(ks, xs, strict=True):
        parts.append(
            f'<text x="{LEFT + pw * x / x_hi:.1f}" y="{H - BOTTOM + 14}" font-size="11" '
            f'text-anchor="middle">{k}</text>'
        )
    return _frame("".join(parts), "k (samples)", "probability", [0, 0.5, 1])

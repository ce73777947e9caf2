"""Tiny inline-SVG charts for self-contained HTML reports (no plotting dependency).

Every label passes through html.escape; callers may hand in model text.
"""

from __future__ import annotations

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

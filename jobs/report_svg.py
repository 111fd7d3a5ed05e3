"""Self-contained SVG plots for the backtest report: line charts, bars and histograms as
inline ``<svg>`` text (no plotting library, no external assets). Used by
:mod:`jobs.report_html`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
MAX_PLOT_POINTS = 1_500
MAX_MARKERS = 1_500

# --------------------------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------------------------
W, H, ML, MR, MT, MB = 760, 240, 70, 120, 28, 36


def _tag(name: str, text: str | None = None, **attrs: Any) -> str:
    """One SVG/HTML element; ``font_size`` → ``font-size``, floats to 0.1 px, text escaped."""
    a = " ".join(
        f'{k.replace("_", "-")}="{f"{v:.1f}" if isinstance(v, float) else html.escape(str(v))}"'
        for k, v in attrs.items()
    )
    return f"<{name} {a}/>" if text is None else f"<{name} {a}>{html.escape(text)}</{name}>"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _num(v: float) -> str:
    a = abs(v)
    if a != 0 and (a >= 1e6 or a < 1e-3):
        return f"{v:.3g}"
    return f"{v:,.4f}".rstrip("0").rstrip(".") if a < 10 else f"{v:,.2f}".rstrip("0").rstrip(".")


def _downsample(
    xs: Sequence[float], ys: Sequence[float], n: int = MAX_PLOT_POINTS
) -> tuple[list[float], list[float]]:
    """Keep the first and last point and each bucket's min and max (extremes survive)."""
    if len(xs) <= n:
        return list(xs), list(ys)
    size = math.ceil(len(xs) / (n // 2))
    keep: set[int] = {0, len(xs) - 1}
    for i in range(0, len(xs), size):
        seg = range(i, min(i + size, len(xs)))
        keep |= {min(seg, key=lambda j: ys[j]), max(seg, key=lambda j: ys[j])}
    return [xs[j] for j in sorted(keep)], [ys[j] for j in sorted(keep)]


class _Frame:
    """Axes of one chart: maps data to pixels and draws the frame, grid and labels."""

    def __init__(self, x_lo: float, x_hi: float, y_lo: float, y_hi: float) -> None:
        if y_hi <= y_lo:
            y_lo, y_hi = y_lo - (abs(y_lo) * 0.01 or 1.0), y_hi + (abs(y_hi) * 0.01 or 1.0)
        self.x_lo, self.x_hi = x_lo, (x_hi if x_hi > x_lo else x_lo + 1.0)
        self.y_lo, self.y_hi = y_lo, y_hi

    def x(self, v: float) -> float:
        return ML + (v - self.x_lo) / (self.x_hi - self.x_lo) * (W - ML - MR)

    def y(self, v: float) -> float:
        return H - MB - (v - self.y_lo) / (self.y_hi - self.y_lo) * (H - MT - MB)

    def axes(self, title: str, x_label: str, y_label: str, x_ticks: bool = True) -> list[str]:
        mid_y = H / 2
        out = [
            _tag("text", title, x=W / 2, y=16, text_anchor="middle", font_weight="bold"),
            _tag(
                "text",
                y_label,
                x=12,
                y=mid_y,
                transform=f"rotate(-90 12 {mid_y})",
                text_anchor="middle",
                font_size=11,
            ),
            _tag("text", x_label, x=(W - MR + ML) / 2, y=H - 4, text_anchor="middle", font_size=11),
            _tag(
                "rect",
                x=ML,
                y=MT,
                width=W - ML - MR,
                height=H - MT - MB,
                fill="none",
                stroke="#999",
            ),
        ]
        for v in _nice_ticks(self.y_lo, self.y_hi):
            py = self.y(v)
            out.append(_tag("line", x1=ML, x2=W - MR, y1=py, y2=py, stroke="#eee"))
            out.append(_tag("text", _num(v), x=ML - 4, y=py + 4, text_anchor="end", font_size=10))
        for v in _nice_ticks(self.x_lo, self.x_hi, 8) if x_ticks else ():
            out.append(
                _tag(
                    "text", _num(v), x=self.x(v), y=H - MB + 13, text_anchor="middle", font_size=10
                )
            )
        return out


def _svg(body: list[str]) -> str:
    return (
        f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
        'font-family="sans-serif">' + "".join(body) + "</svg>"
    )


def svg_lines(
    series: Sequence[tuple[str, Sequence[float], Sequence[float | None]]],
    title: str,
    x_label: str,
    y_label: str,
    markers: Sequence[tuple[float, float, int]] = (),
    fill_to_zero: bool = False,
) -> str:
    """Draw line series (gaps where y is None) and optional buy (+1) / sell (-1) markers.

    Args:
        series: ``(label, xs, ys)`` per line.
        title: Chart title.
        x_label: X axis label.
        y_label: Y axis label.
        markers: ``(x, y, side)``: green up triangles for buys, red down triangles for sells.
        fill_to_zero: Shade the area between the first series and 0 (drawdown charts).
    """
    pts = [(x, y) for _, xs, ys in series for x, y in zip(xs, ys, strict=True) if y is not None]
    pts += [(x, y) for x, y, _ in markers]
    if not pts:
        return _svg([_tag("text", f"{title}: no data", x=W / 2, y=H / 2, text_anchor="middle")])
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    if fill_to_zero:
        y_lo, y_hi = min(y_lo, 0.0), max(y_hi, 0.0)
    pad = (y_hi - y_lo) * 0.05
    fr = _Frame(min(p[0] for p in pts), max(p[0] for p in pts), y_lo - pad, y_hi + pad)
    body = fr.axes(title, x_label, y_label)
    for i, (label, xs, ys) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        runs: list[list[tuple[float, float]]] = [[]]
        for x, y in zip(xs, ys, strict=True):
            runs.append([]) if y is None else runs[-1].append((x, y))
        for run in (r for r in runs if r):
            dx, dy = _downsample([p[0] for p in run], [p[1] for p in run])
            d = " ".join(f"{fr.x(a):.1f},{fr.y(b):.1f}" for a, b in zip(dx, dy, strict=True))
            if fill_to_zero and i == 0:
                z = f"{fr.y(0.0):.1f}"
                d0, d1 = f"{fr.x(dx[0]):.1f},{z}", f"{fr.x(dx[-1]):.1f},{z}"
                body.append(_tag("polygon", points=f"{d0} {d} {d1}", fill=color, fill_opacity=0.2))
            body.append(_tag("polyline", points=d, fill="none", stroke=color, stroke_width=1.3))
        body.append(_tag("text", label, x=W - MR + 8, y=MT + 12 + 14 * i, font_size=11, fill=color))
    stride = max(1, math.ceil(len(markers) / MAX_MARKERS))
    for x, y, side in list(markers)[::stride]:
        px, py = fr.x(x), fr.y(y)
        tip = (
            f"M{px:.1f},{py - 4:.1f} l4,7 h-8 z"
            if side > 0
            else f"M{px:.1f},{py + 4:.1f} l4,-7 h-8 z"
        )
        body.append(_tag("path", d=tip, fill="#2ca02c" if side > 0 else "#d62728"))
    if markers:
        body.append(
            _tag("text", "▲ buy fill", x=W - MR + 8, y=H - MB - 18, font_size=11, fill="#2ca02c")
        )
        body.append(
            _tag("text", "▼ sell fill", x=W - MR + 8, y=H - MB - 4, font_size=11, fill="#d62728")
        )
    return _svg(body)


def svg_bars(
    labels: Sequence[str], values: Sequence[float | None], title: str, y_label: str
) -> str:
    """Draw one bar per label (None draws nothing); negative bars hang below 0."""
    vals = [0.0 if v is None else float(v) for v in values]
    if not vals:
        return svg_lines([], title, "", y_label)
    lo, hi = min(min(vals), 0.0), max(max(vals), 0.0)
    pad = (hi - lo) * 0.08
    fr = _Frame(0.0, float(len(vals)), lo - pad, hi + pad)
    body = fr.axes(title, "", y_label, x_ticks=False)
    slot = (W - ML - MR) / len(vals)
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        cx = ML + slot * (i + 0.5)
        if v is not None:
            top, bottom = sorted((fr.y(float(v)), fr.y(0.0)))
            body.append(
                _tag(
                    "rect",
                    x=cx - slot * 0.35,
                    y=top,
                    width=slot * 0.7,
                    height=max(bottom - top, 0.5),
                    fill=PALETTE[i % len(PALETTE)],
                )
            )
        body.append(_tag("text", label, x=cx, y=H - MB + 13, text_anchor="middle", font_size=10))
    return _svg(body)


def svg_histogram(edges: Sequence[float], counts: Sequence[int], title: str, x_label: str) -> str:
    """Draw a histogram from bin ``edges`` (len(counts) + 1) and ``counts``."""
    if not counts:
        return svg_lines([], title, x_label, "count")
    fr = _Frame(float(edges[0]), float(edges[-1]), 0.0, float(max(counts)) * 1.05 or 1.0)
    body = fr.axes(title, x_label, "count")
    for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True):
        x0, x1, top = fr.x(lo), fr.x(hi), fr.y(c)
        body.append(
            _tag(
                "rect",
                x=x0,
                y=top,
                width=max(x1 - x0 - 1, 0.5),
                height=fr.y(0) - top,
                fill=PALETTE[0],
            )
        )
    return _svg(body)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

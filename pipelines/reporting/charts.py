"""Charts of the compliance report as inline SVG, drawn here, in Python.

No script, no library, no external file: the report is one HTML file read
offline. Every chart is an ``<svg role="img">`` with a ``<title>`` and a
``<desc>``, carries its numbers as text next to the marks, and stands next to
a table with the same numbers. The inputs are small aggregates (flags ×
telcos, runs × telcos, score bins, provinces), never rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

# Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8C8C00",
           "#000000")
STATUS_COLOURS = {"VERIFIED": "#009E73", "REVIEW": "#E69F00", "MISMATCH": "#D55E00",
                  "UNREGISTERED": "#CC79A7", "FOREIGN_DOCUMENT": "#56B4E9"}
FONT = 12


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def fmt(value: float | int) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above ``value`` (at least 1)."""
    if value <= 1:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _text_px(text: str, size: int = FONT) -> float:
    """Rough rendered width: capitals and digits are wider than small letters."""
    wide = sum(1 for c in text if c.isupper() or c.isdigit() or c in "_MW%")
    return (wide * 8.2 + (len(text) - wide) * 6.4) * size / FONT


def _svg(chart_id: str, title: str, desc: str, width: float, height: float,
         body: list[str]) -> Markup:
    w, h = round(width), round(height)
    head = (f'<svg class="chart" id="{escape(chart_id)}" role="img" '
            f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" '
            f'viewBox="0 0 {w} {h}" width="{w}" height="{h}" '
            f'xmlns="http://www.w3.org/2000/svg" font-size="{FONT}">'
            f'<title id="{escape(chart_id)}-title">{escape(title)}</title>'
            f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>')
    return Markup(head + "".join(body) + "</svg>")


def _legend(names: Sequence[str], colours: Sequence[str], x: float, y: float) -> list[str]:
    out, cursor = [], x
    for name, fill in zip(names, colours, strict=True):
        out.append(f'<rect x="{cursor:.0f}" y="{y - 10:.0f}" width="12" height="12" '
                   f'fill="{fill}"/><text x="{cursor + 16:.0f}" y="{y:.0f}">{escape(name)}</text>')
        cursor += 16 + _text_px(name) + 18
    return out


def _empty(chart_id: str, title: str, message: str) -> Markup:
    return _svg(chart_id, title, message, 480, 40,
                [f'<text x="8" y="24" class="muted">{escape(message)}</text>'])


def grouped_hbars(chart_id: str, title: str, categories: Sequence[str],
                  series: dict[str, Sequence[int]], *, desc: str = "") -> Markup:
    """One band per category, one horizontal bar per series in it, value at its end."""
    names = list(series)
    if not categories or not names:
        return _empty(chart_id, title, "Nothing to show.")
    label_w = max(_text_px(c) for c in categories) + 12
    bar_h, gap, plot_w, top = 11, 8, 520, 30
    peak = max([1, *(max(v, default=0) for v in series.values())])
    band = len(names) * bar_h + gap
    height = top + len(categories) * band + 10
    width = label_w + plot_w + 70
    body = _legend(names, [colour(i) for i in range(len(names))], label_w, 16)
    for c, category in enumerate(categories):
        y0 = top + c * band
        body.append(f'<text x="{label_w - 6:.0f}" y="{y0 + band / 2 + 2:.0f}" '
                    f'text-anchor="end">{escape(category)}</text>')
        for s, name in enumerate(names):
            value = series[name][c]
            w = plot_w * value / peak
            y = y0 + s * bar_h
            body.append(f'<rect x="{label_w:.0f}" y="{y:.0f}" width="{w:.1f}" '
                        f'height="{bar_h - 1}" fill="{colour(s)}"><title>{escape(category)}, '
                        f'{escape(name)}: {fmt(value)}</title></rect>'
                        f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 2:.0f}" '
                        f'font-size="10">{fmt(value)}</text>')
    body.append(f'<line x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{height - 8}" '
                'stroke="#889"/>')
    return _svg(chart_id, title, desc or title, width, height, body)


def hbars(chart_id: str, title: str, labels: Sequence[str], values: Sequence[int], *,
          desc: str = "", notes: Sequence[str] | None = None) -> Markup:
    """Horizontal bars with their values (and an optional note after each value)."""
    if not labels:
        return _empty(chart_id, title, "Nothing to show.")
    label_w = max(_text_px(x) for x in labels) + 12
    bar_h, plot_w, top = 16, 460, 8
    peak = max([1, *values])
    notes = list(notes) if notes is not None else [""] * len(labels)
    note_w = max([0.0, *(_text_px(n) for n in notes)])
    height = top + len(labels) * (bar_h + 4) + 8
    width = label_w + plot_w + 80 + note_w
    body = []
    for i, (label, value, note) in enumerate(zip(labels, values, notes, strict=True)):
        y = top + i * (bar_h + 4)
        w = plot_w * value / peak
        body.append(f'<text x="{label_w - 6:.0f}" y="{y + bar_h - 4:.0f}" '
                    f'text-anchor="end">{escape(label)}</text>'
                    f'<rect x="{label_w:.0f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                    f'fill="{colour(0)}"><title>{escape(label)}: {fmt(value)}</title></rect>'
                    f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 4:.0f}">{fmt(value)}'
                    f'{escape(note)}</text>')
    return _svg(chart_id, title, desc or title, width, height, body)


def _y_axis(peak: float, left: float, top: float, plot_w: float, plot_h: float,
            ticks: int = 4) -> list[str]:
    out = []
    for k in range(ticks + 1):
        value = peak * k / ticks
        y = top + plot_h - plot_h * k / ticks
        out.append(f'<line x1="{left:.0f}" y1="{y:.1f}" x2="{left + plot_w:.0f}" y2="{y:.1f}" '
                   f'stroke="#dde"/><text x="{left - 6:.0f}" y="{y + 4:.1f}" '
                   f'text-anchor="end" font-size="10">{fmt(value)}</text>')
    return out


# Per series: a dash pattern, a marker shape and a stroke width that shrinks with the
# series' rank, so that a line drawn over another with the same values leaves the
# one below visible as a wider outline (issue 16: "one telco's line hides another's").
DASHES = ("", "7 4", "2 3", "10 3 2 3", "4 4", "1 2")
MARKERS = ("circle", "square", "triangle", "diamond")
LABEL_GAP = 12.0  # px between the baselines of two value labels (font 10)


def _marker(shape: str, x: float, y: float, r: float, fill: str, tip: str) -> str:
    title = f"<title>{escape(tip)}</title>"
    if shape == "square":
        return (f'<rect class="marker" x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" '
                f'height="{2 * r:.1f}" fill="{fill}" stroke="#fff" stroke-width="1">'
                f'{title}</rect>')
    if shape in ("triangle", "diamond"):
        points = ([(x, y - r * 1.2), (x + r * 1.1, y + r * 0.8), (x - r * 1.1, y + r * 0.8)]
                  if shape == "triangle" else
                  [(x, y - r * 1.25), (x + r * 1.25, y), (x, y + r * 1.25), (x - r * 1.25, y)])
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
        return (f'<polygon class="marker" points="{path}" fill="{fill}" stroke="#fff" '
                f'stroke-width="1">{title}</polygon>')
    return (f'<circle class="marker" cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" '
            f'stroke="#fff" stroke-width="1">{title}</circle>')


def dodge(wanted: Sequence[float], low: float, high: float, gap: float = LABEL_GAP) -> list[float]:
    """Label positions as near ``wanted`` as possible, at least ``gap`` apart, within
    [``low``, ``high``] (when they fit): the labels of one x never print over each other."""
    if not wanted:
        return []
    order = sorted(range(len(wanted)), key=lambda i: wanted[i])
    placed = [float(wanted[i]) for i in order]
    for k in range(1, len(placed)):  # push down
        placed[k] = max(placed[k], placed[k - 1] + gap)
    overflow = placed[-1] - high
    if overflow > 0:  # then pull the whole stack up, keeping the gaps
        for k in range(len(placed) - 1, -1, -1):
            limit = high if k == len(placed) - 1 else placed[k + 1] - gap
            placed[k] = min(placed[k], limit)
    shift = low - placed[0]
    if shift > 0:
        placed = [p + shift for p in placed]
    out = [0.0] * len(wanted)
    for k, i in enumerate(order):
        out[i] = placed[k]
    return out


def _thin(count: int, step: float, width: float) -> int:
    """Every how many x labels of ``width`` px fit at ``step`` px apart."""
    return max(1, math.ceil((width + 8) / max(step, 1.0)))


def line_chart(chart_id: str, title: str, x_labels: Sequence[str],
               series: dict[str, Sequence[int | None]], *, desc: str = "",
               y_label: str = "", label_all_up_to: int = 4) -> Markup:
    """One line per series over ``x_labels`` (runs), a value at every point; ``None``
    leaves a gap (the telco was not processed in that run).

    Readable with 1 to many runs: each series has its own colour, dash and marker
    shape, drawn wider the earlier it is listed so equal lines stay visible; value
    labels are dodged apart at each x, every point labelled up to
    ``label_all_up_to`` runs, only the last value of each series beyond (the
    numbers are in the table below the chart and in each marker's tooltip)."""
    names = list(series)
    if not x_labels or not names:
        return _empty(chart_id, title, "No run to show yet.")
    values = [v for s in series.values() for v in s if v is not None]
    peak = nice_max(max([1, *values]))
    top, plot_h = 34, 220
    left = max(64.0, _text_px(fmt(peak), 10) + 34)
    step = max(72.0, min(110.0, 760 / max(1, len(x_labels))))
    plot_w = max(360.0, step * max(1, len(x_labels) - 1))
    step = plot_w / max(1, len(x_labels) - 1)
    label_w = max([0.0, *(_text_px(fmt(v), 10) for v in values)])
    width = max(left + plot_w + label_w + 24, left + sum(_text_px(n) + 34 for n in names))
    height = top + plot_h + 40
    body = _legend_lines(names, left, 16)
    body += _y_axis(peak, left, top, plot_w, plot_h)
    if y_label:
        body.append(f'<text x="12" y="{top + plot_h / 2:.0f}" font-size="10" '
                    f'transform="rotate(-90 12 {top + plot_h / 2:.0f})" '
                    f'text-anchor="middle">{escape(y_label)}</text>')

    def x_at(i: int) -> float:
        return left + (step * i if len(x_labels) > 1 else plot_w / 2)

    every = _thin(len(x_labels), step if len(x_labels) > 1 else plot_w,
                  max(_text_px(x, 10) for x in x_labels))
    last = len(x_labels) - 1
    for i, label in enumerate(x_labels):
        if (last - i) % every == 0:  # the latest run always has its label
            body.append(f'<text class="x-label" x="{x_at(i):.1f}" y="{top + plot_h + 16:.0f}" '
                        f'font-size="10" text-anchor="middle">{escape(label)}</text>')
    y_of = {n: [None if v is None else top + plot_h - plot_h * v / peak for v in series[n]]
            for n in names}
    labelled = range(len(x_labels)) if len(x_labels) <= label_all_up_to else [None]
    labels: list[str] = []
    for i in labelled:
        # At x i, or at each series' own last point when only the last values are shown.
        points = []
        for s, name in enumerate(names):
            at = i if i is not None else max((k for k, v in enumerate(series[name])
                                              if v is not None), default=None)
            if at is not None and series[name][at] is not None:
                points.append((s, at, y_of[name][at], series[name][at]))
        if i is None:  # labels of different x never meet: dodge per x
            columns: dict[int, list] = {}
            for p in points:
                columns.setdefault(p[1], []).append(p)
            groups = list(columns.values())
        else:
            groups = [points]
        for group in groups:
            ys = dodge([p[2] + 4 for p in group], top + 8, top + plot_h + 2)
            for (s, at, _, v), y in zip(group, ys, strict=True):
                labels.append(f'<text class="point-label" x="{x_at(at) + 9:.1f}" y="{y:.1f}" '
                              f'font-size="10" fill="{colour(s)}" stroke="#fff" stroke-width="3" '
                              'paint-order="stroke" pointer-events="none">'
                              f'{fmt(v)}</text>')
    widths = [4.0 + 1.5 * (len(names) - 1 - s) for s in range(len(names))]
    for s, name in enumerate(names):
        group = [f'<g class="series" data-series="{escape(name)}">']
        segment: list[tuple[float, float]] = []
        for i, y in enumerate([*y_of[name], None]):
            if y is None:
                if len(segment) > 1:
                    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in segment)
                    dash = DASHES[s % len(DASHES)]
                    group.append(f'<polyline points="{path}" fill="none" stroke="{colour(s)}" '
                                 f'stroke-width="{widths[s] - 1.5:.1f}" stroke-linejoin="round"'
                                 + (f' stroke-dasharray="{dash}"' if dash else "") + "/>")
                segment = []
            else:
                segment.append((x_at(i), y))
        for i, y in enumerate(y_of[name]):
            if y is not None:
                group.append(_marker(MARKERS[s % len(MARKERS)], x_at(i), y, widths[s],
                                     colour(s), f"{name}, {x_labels[i]}: {fmt(series[name][i])}"))
        group.append("</g>")
        body += group
    body += labels
    return _svg(chart_id, title, desc or title, width, height, body)


def _legend_lines(names: Sequence[str], x: float, y: float) -> list[str]:
    """A legend whose keys show each series' colour, dash and marker."""
    out, cursor = [], x
    for s, name in enumerate(names):
        dash = DASHES[s % len(DASHES)]
        out.append(f'<line x1="{cursor:.0f}" y1="{y - 4:.0f}" x2="{cursor + 22:.0f}" '
                   f'y2="{y - 4:.0f}" stroke="{colour(s)}" stroke-width="2"'
                   + (f' stroke-dasharray="{dash}"' if dash else "") + "/>"
                   + _marker(MARKERS[s % len(MARKERS)], cursor + 11, y - 4, 3.5, colour(s), name)
                   + f'<text x="{cursor + 26:.0f}" y="{y:.0f}">{escape(name)}</text>')
        cursor += 26 + _text_px(name) + 18
    return out


MIN_BAR_PX = 3.0  # a non-zero count is never drawn thinner than this


def diverging_bars(chart_id: str, title: str, x_labels: Sequence[str],
                   up: dict[str, Sequence[int]], down: dict[str, Sequence[int]], *,
                   desc: str = "") -> Markup:
    """Per x, stacked bars above the axis (``up`` series) and below it (``down``).

    Each side has its own scale (the "resolved" counts below the axis are often a
    few against thousands above it, and would be slivers on a shared one), noted on
    the axis; a non-zero count is at least ``MIN_BAR_PX`` tall and every bar's
    total is printed at its end."""
    if not x_labels:
        return _empty(chart_id, title, "No run to show yet.")
    up_names, down_names = list(up), list(down)
    colours = {n: colour(i + 2) for i, n in enumerate(up_names)}
    colours |= {n: colour(i + 5) for i, n in enumerate(down_names)}
    left, top, up_full, down_full = 64, 34, 130, 60
    step = max(72.0, min(90.0, 760 / max(1, len(x_labels))))
    bar_w = min(40.0, step * 0.55)
    width = max(left + step * len(x_labels) + 20,
                left + sum(_text_px(n) + 34 for n in up_names + down_names))
    totals_up = [sum(s[i] for s in up.values()) for i in range(len(x_labels))]
    totals_down = [sum(s[i] for s in down.values()) for i in range(len(x_labels))]
    up_peak, down_peak = nice_max(max([1, *totals_up])), nice_max(max([1, *totals_down]))
    up_h, down_h = up_full + 14, down_full + 14
    axis_y = top + up_h
    height = axis_y + down_h + 34
    body = _legend(up_names + down_names, [colours[n] for n in up_names + down_names], left, 16)
    body.append(f'<line x1="{left}" y1="{axis_y:.1f}" x2="{width - 10:.0f}" y2="{axis_y:.1f}" '
                f'stroke="#556"/><text x="{left - 6}" y="{axis_y + 4:.1f}" text-anchor="end" '
                'font-size="10">0</text>'
                f'<text x="{left - 6}" y="{top + 14:.0f}" text-anchor="end" font-size="10">'
                f'{fmt(up_peak)}</text>'
                f'<text x="{left - 6}" y="{axis_y + down_full + 4:.0f}" text-anchor="end" '
                f'font-size="10">{fmt(down_peak)}</text>')
    every = _thin(len(x_labels), step, max(_text_px(x, 10) for x in x_labels))
    last = len(x_labels) - 1
    for i, label in enumerate(x_labels):
        x = left + step * i + (step - bar_w) / 2
        for names, sign, total, peak, full in ((up_names, -1, totals_up[i], up_peak, up_full),
                                               (down_names, 1, totals_down[i], down_peak,
                                                down_full)):
            offset = 0.0
            for name in names:
                value = (up if sign < 0 else down)[name][i]
                h = max(MIN_BAR_PX, value * full / peak) if value else 0.0
                y = axis_y - offset - h if sign < 0 else axis_y + offset
                body.append(f'<rect class="cycle-bar" data-series="{escape(name)}" x="{x:.1f}" '
                            f'y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                            f'fill="{colours[name]}"><title>{escape(label)}, '
                            f'{escape(name)}: {fmt(value)}</title></rect>')
                offset += h
            ty = axis_y - offset - 4 if sign < 0 else axis_y + offset + 11
            fill = "#1d2433" if sign < 0 else colours[down_names[0]] if down_names else "#1d2433"
            body.append(f'<text class="bar-label" x="{x + bar_w / 2:.1f}" y="{ty:.1f}" '
                        f'font-size="10" text-anchor="middle" fill="{fill}">'
                        f'{fmt(total)}</text>')
        if (last - i) % every == 0:
            body.append(f'<text class="x-label" x="{x + bar_w / 2:.1f}" y="{height - 6:.0f}" '
                        f'font-size="10" text-anchor="middle">{escape(label)}</text>')
    return _svg(chart_id, title, desc or title, width, height, body)


def stacked_histogram(chart_id: str, title: str, bin_labels: Sequence[str],
                      stacks: dict[str, Sequence[int]], *, desc: str = "",
                      markers: Sequence[tuple[float, str]] = (),
                      colours: dict[str, str] | None = None) -> Markup:
    """Vertical stacked bars, one per bin; ``markers`` are (bin position, label) lines."""
    names = [n for n in stacks if any(stacks[n])]
    if not bin_labels or not names:
        return _empty(chart_id, title, "No score to show.")
    colours = colours or {}
    fills = [colours.get(n, colour(i)) for i, n in enumerate(names)]
    left, top, plot_h = 64, 34, 200
    bar_w = max(8.0, min(24.0, 760 / len(bin_labels)))
    plot_w = bar_w * len(bin_labels)
    width, height = left + plot_w + 30, top + plot_h + 60
    totals = [sum(stacks[n][i] for n in names) for i in range(len(bin_labels))]
    peak = nice_max(max([1, *totals]))
    body = _legend(names, fills, left, 16)
    body += _y_axis(peak, left, top, plot_w, plot_h)
    label_every = _thin(len(bin_labels), bar_w, max(_text_px(x, 10) for x in bin_labels))
    total_right = -math.inf  # a bar's total is printed only where it does not touch the last
    for i, label in enumerate(bin_labels):
        x = left + i * bar_w
        offset = 0.0
        for name, fill in zip(names, fills, strict=True):
            value = stacks[name][i]
            if not value:
                continue
            h = plot_h * value / peak
            body.append(f'<rect x="{x:.1f}" y="{top + plot_h - offset - h:.1f}" '
                        f'width="{bar_w - 1:.1f}" height="{h:.1f}" fill="{fill}">'
                        f'<title>{escape(label)}, {escape(name)}: {fmt(value)}</title></rect>')
            offset += h
        half = _text_px(fmt(totals[i]), 9) / 2
        if totals[i] and x + bar_w / 2 - half > total_right + 3:
            body.append(f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h - offset - 3:.1f}" '
                        f'font-size="9" text-anchor="middle">{fmt(totals[i])}</text>')
            total_right = x + bar_w / 2 + half
        if i % label_every == 0:
            body.append(f'<text x="{x:.1f}" y="{top + plot_h + 18:.0f}" font-size="10" '
                        f'text-anchor="middle">{escape(label)}</text>')
    # The leftmost marker's label ends at its line, the others start at theirs.
    for k, (position, label) in enumerate(sorted(markers)):
        x = left + position * bar_w
        anchor, dx = ("end", -3) if k == 0 and len(markers) > 1 else ("start", 3)
        body.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + plot_h}" '
                    f'stroke="#333" stroke-dasharray="4 3"/><text x="{x + dx:.1f}" '
                    f'y="{top + plot_h + 40:.0f}" font-size="10" text-anchor="{anchor}">'
                    f'{escape(label)}</text>')
    return _svg(chart_id, title, desc or title, width, height, body)

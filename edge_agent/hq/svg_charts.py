"""Inline SVG charts for the journey report: the floor plan heat map with flows, horizontal bars,
a histogram and a footfall time chart. Each returns SVG text; every drawn figure also sits in a
``data-`` attribute of its shape, so a reader (or a test) gets the number without the pixels.

Colours are colour-blind safe: the heat map is viridis (light to dark reads as little to much,
in grey too), categories use the Okabe-Ito palette.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from html import escape

from edge_agent.hq.journey_figures import FootfallInterval, Point, StoreLayout

BLUE, ORANGE, GREEN, VERMILLION, SKY = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9"
VIRIDIS = ("#fde725", "#90d743", "#35b779", "#21918c", "#31688e", "#443983", "#440154")
FLOWS_DRAWN = 12  # more arrows than this hide the plan; the table beside it lists them all
PLAN_WIDTH = 620
LEGEND_STEPS = 5


def attr(value: object) -> str:
    return escape(str(value), quote=True)


def heat_colour(share: float) -> str:
    """Viridis at ``share`` (0..1), from the palette's stops, linear between them."""
    share = min(1.0, max(0.0, share))
    at = share * (len(VIRIDIS) - 1)
    low = int(at)
    high = min(low + 1, len(VIRIDIS) - 1)
    frac = at - low
    a, b = _rgb(VIRIDIS[low]), _rgb(VIRIDIS[high])
    return "#" + "".join(f"{round(x + (y - x) * frac):02x}" for x, y in zip(a, b, strict=True))


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _ink_on(colour: str) -> str:
    r, g, b = _rgb(colour)
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


@dataclass(frozen=True, slots=True)
class _Frame:
    """Metres to pixels for one floor plan (y grows downwards, as the config's origin is front-left)."""

    min_x: float
    min_y: float
    scale: float
    pad: float = 12.0

    def __call__(self, point: Point) -> tuple[float, float]:
        return (
            self.pad + (point[0] - self.min_x) * self.scale,
            self.pad + (point[1] - self.min_y) * self.scale,
        )


def floor_plan(
    layout: StoreLayout, dwell_s: Mapping[str, float], flows: Mapping[tuple[str, str], int], svg_id: str
) -> str:
    """Zones shaded by dwell minutes with their names and figures, receivers as dots, and the
    busiest zone-to-zone flows as arrows as wide as their count, with the scale's legend."""
    zones = [z for z in layout.zones if len(z.polygon) >= 3]
    xs = [p[0] for z in zones for p in z.polygon]
    ys = [p[1] for z in zones for p in z.polygon]
    scale = (PLAN_WIDTH - 24) / max(max(xs) - min(xs), 1e-9)
    frame = _Frame(min(xs), min(ys), scale)
    height = 24 + (max(ys) - min(ys)) * scale
    top = max(dwell_s.values(), default=0.0)
    centres = {z.zone_id: _centre(z.polygon) for z in zones}
    parts = [
        f'<svg id="{attr(svg_id)}" class="floor-plan" role="img" '
        f'viewBox="0 0 {PLAN_WIDTH} {height + 56:.0f}" width="{PLAN_WIDTH}" '
        'aria-label="floor plan: dwell per zone and flows between zones">',
        f'<defs><marker id="{attr(svg_id)}-head" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="14" '
        'markerHeight="14" '
        'markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#222"/></marker>'
        "</defs>",
    ]
    labels = []
    for zone in zones:
        seconds = dwell_s.get(zone.zone_id, 0.0)
        fill = heat_colour(seconds / top) if top else "#f2f2f2"
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in map(frame, zone.polygon))
        cx, _ = frame(centres[zone.zone_id])
        upper = min(frame(p)[1] for p in zone.polygon)
        # Text over the arrows, haloed in the zone's own colour so both stay readable.
        style = f"fill:{_ink_on(fill)};stroke:{fill};stroke-width:4px;paint-order:stroke"
        parts.append(
            f'<g class="zone" data-zone="{attr(zone.zone_id)}" data-dwell-s="{seconds}">'
            f'<polygon points="{points}" fill="{fill}" stroke="#333" stroke-width="1.5"/></g>'
        )
        labels.append(
            f'<text x="{cx:.1f}" y="{upper + 20:.1f}" text-anchor="middle" style="{style}" class="zone-name">'
            f"{escape(zone.name)}</text>"
            f'<text x="{cx:.1f}" y="{upper + 38:.1f}" text-anchor="middle" style="{style}" '
            'class="zone-value">'
            f"{seconds / 60:.0f} min</text>"
        )
    parts.extend(_flow_arrows(flows, centres, frame, svg_id))
    parts.extend(labels)
    for receiver_id, position in layout.receivers:
        x, y = frame(position)
        parts.append(
            f'<circle class="receiver" data-receiver="{attr(receiver_id)}" cx="{x:.1f}" cy="{y:.1f}" r="5" '
            f'fill="#fff" stroke="#222" stroke-width="2"><title>receiver {escape(receiver_id)}</title>'
            "</circle>"
        )
    parts.append(_heat_legend(top, height + 8))
    parts.append("</svg>")
    return "".join(parts)


def _centre(polygon: Sequence[Point]) -> Point:
    return sum(p[0] for p in polygon) / len(polygon), sum(p[1] for p in polygon) / len(polygon)


def _flow_arrows(
    flows: Mapping[tuple[str, str], int], centres: Mapping[str, Point], frame: _Frame, svg_id: str
) -> list[str]:
    drawn = sorted(
        ((pair, n) for pair, n in flows.items() if pair[0] in centres and pair[1] in centres),
        key=lambda item: (-item[1], item[0]),
    )[:FLOWS_DRAWN]
    top = max((n for _, n in drawn), default=1)
    arrows = []
    for (source, target), count in drawn:
        (x1, y1), (x2, y2) = frame(centres[source]), frame(centres[target])
        dx, dy = x2 - x1, y2 - y1
        length = max((dx * dx + dy * dy) ** 0.5, 1e-9)
        # Offset to the arrow's right, so A->B and B->A run side by side; stop short of the centres.
        ox, oy = -dy / length * 10, dx / length * 10
        sx, sy = x1 + dx * 0.2 + ox, y1 + dy * 0.2 + oy
        ex, ey = x1 + dx * 0.8 + ox, y1 + dy * 0.8 + oy
        width = 1.5 + 8.5 * count / top
        arrows.append(
            f'<g class="flow" data-from="{attr(source)}" data-to="{attr(target)}" data-count="{count}">'
            f'<line x1="{sx:.1f}" y1="{sy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="#222" '
            f'stroke-opacity="0.8" stroke-width="{width:.1f}" stroke-linecap="round" '
            f'marker-end="url(#{attr(svg_id)}-head)"><title>{escape(source)} to {escape(target)}: '
            f"{count}</title></line></g>"
        )
    return arrows


def _heat_legend(top_s: float, y: float) -> str:
    width = 56
    parts = [f'<g class="legend" transform="translate(12,{y:.0f})">']
    parts.append(
        '<text x="0" y="10" class="legend-title">dwell per zone, minutes (all visits of the day)</text>'
    )
    for step in range(LEGEND_STEPS):
        share = step / (LEGEND_STEPS - 1)
        parts.append(
            f'<rect x="{step * width}" y="16" width="{width}" height="12" fill="{heat_colour(share)}" '
            'stroke="#333" stroke-width="0.5"/>'
            f'<text x="{step * width + width / 2}" y="42" text-anchor="middle">{top_s * share / 60:.0f}'
            "</text>"
        )
    parts.append(
        f'<text x="{LEGEND_STEPS * width + 16}" y="27">arrows: walks from zone to zone,</text>'
        f'<text x="{LEGEND_STEPS * width + 16}" y="43">width = count ({FLOWS_DRAWN} busiest); '
        "dots: receivers</text></g>"
    )
    return "".join(parts)


def bars(rows: Sequence[tuple[str, float, str]], css_class: str, colour: str, unit: str) -> str:
    """Horizontal bars, one per (label, value, data- attributes), the value written at the end."""
    if not rows:
        return _empty(css_class, "none")
    label_width, bar_width, row = 230, 300, 26
    top = max(value for _, value, _ in rows) or 1
    parts = [f'<svg class="{css_class}" role="img" viewBox="0 0 600 {row * len(rows) + 4}" width="600">']
    for index, (label, value, data) in enumerate(rows):
        y = index * row + 2
        width = max(bar_width * value / top, 1.0)
        parts.append(
            f'<g class="bar" {data}><text x="{label_width - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{label_width}" y="{y + 2}" width="{width:.1f}" height="{row - 8}" fill="{colour}"/>'
            f'<text x="{label_width + width + 6:.1f}" y="{y + 16}">{value:g}{unit}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(bins: Sequence[tuple[float, float, int]], colour: str = BLUE) -> str:
    """Vertical bars of (from minute, to minute, count) with the minutes below and counts above."""
    if not bins:
        return _empty("histogram", "no order was collected this day")
    left, plot_w, plot_h = 40, 540, 160
    axis = plot_h + 24  # room above the tallest bar for its count
    width = plot_w / len(bins)
    top = max(n for _, _, n in bins) or 1
    parts = [f'<svg class="histogram" role="img" viewBox="0 0 600 {axis + 40}" width="600">']
    parts.append(f'<line x1="{left}" y1="{axis}" x2="{left + plot_w}" y2="{axis}" stroke="#333"/>')
    for index, (low, high, count) in enumerate(bins):
        h = plot_h * count / top
        x = left + index * width
        parts.append(
            f'<g class="bin" data-from-min="{low:g}" data-to-min="{high:g}" data-count="{count}">'
            f'<rect x="{x + 2:.1f}" y="{axis - h:.1f}" width="{width - 4:.1f}" height="{h:.1f}" '
            f'fill="{colour}"/><text x="{x + width / 2:.1f}" y="{axis - h - 5:.1f}" text-anchor="middle">'
            f"{count}</text>"
            f'<text x="{x + width / 2:.1f}" y="{axis + 16}" text-anchor="middle">{low:g}-{high:g}</text>'
            "</g>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{axis + 36}" text-anchor="middle">'
        "minutes from arrival to collection (collections per bin)</text></svg>"
    )
    return "".join(parts)


def footfall_chart(intervals: Sequence[FootfallInterval]) -> str:
    """Entries and exits per interval as bars, occupancy at each interval's end as a line, on a
    time axis in the store's local hours."""
    if not intervals:
        return _empty("footfall", "no footfall")
    left, plot_w, plot_h, width = 44, 1110, 200, 1180
    start, end = intervals[0].start, max(i.end for i in intervals)
    span = max((end - start).total_seconds(), 1.0)
    top = max(max(i.entries, i.exits, i.occupancy) for i in intervals) or 1

    def x_at(moment: float) -> float:
        return left + plot_w * moment / span

    def y_at(value: float) -> float:
        return 10 + plot_h * (1 - value / top)

    parts = [f'<svg class="footfall" role="img" viewBox="0 0 {width} {plot_h + 70}" width="{width}">']
    for tick in _nice_ticks(top):
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y_at(tick):.1f}" y2="{y_at(tick):.1f}" '
            'stroke="#ddd"/>'
            f'<text x="{left - 6}" y="{y_at(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    points = []
    for interval in intervals:
        x0 = x_at((interval.start - start).total_seconds())
        x1 = x_at((interval.end - start).total_seconds())
        half = max((x1 - x0) / 2 - 0.5, 0.5)
        parts.append(
            f'<g class="interval" data-start="{interval.start.isoformat()}" '
            f'data-end="{interval.end.isoformat()}" '
            f'data-entries="{interval.entries}" data-exits="{interval.exits}" '
            f'data-occupancy="{interval.occupancy}">'
            f'<rect x="{x0:.1f}" y="{y_at(interval.entries):.1f}" width="{half:.1f}" '
            f'height="{y_at(0) - y_at(interval.entries):.1f}" fill="{BLUE}"/>'
            f'<rect x="{x0 + half:.1f}" y="{y_at(interval.exits):.1f}" width="{half:.1f}" '
            f'height="{y_at(0) - y_at(interval.exits):.1f}" fill="{SKY}"/>'
            f"<title>{interval.start:%H:%M}-{interval.end:%H:%M}: {interval.entries} in, "
            f"{interval.exits} out, {interval.occupancy} inside</title></g>"
        )
        points.append(f"{x1:.1f},{y_at(interval.occupancy):.1f}")
    parts.append(
        f'<polyline class="occupancy" points="{" ".join(points)}" fill="none" stroke="{VERMILLION}" '
        'stroke-width="2.5"/>'
    )
    parts.append(f'<line x1="{left}" y1="{y_at(0)}" x2="{left + plot_w}" y2="{y_at(0)}" stroke="#333"/>')
    hour = start.replace(minute=0, second=0, microsecond=0)
    step_h = 1 if span <= 14 * 3600 else 2
    while hour <= end:
        offset = (hour - start).total_seconds()
        if offset >= 0:
            parts.append(
                f'<text class="time-label" x="{x_at(offset):.1f}" y="{y_at(0) + 18:.1f}" '
                f'text-anchor="middle">{hour:%H:%M}</text>'
            )
        hour += timedelta(hours=step_h)
    parts.append(
        f'<g transform="translate({left},{plot_h + 52})" class="legend">'
        f'<rect width="12" height="12" fill="{BLUE}"/><text x="18" y="11">entries per interval</text>'
        f'<rect x="180" width="12" height="12" fill="{SKY}"/><text x="198" y="11">exits per interval</text>'
        f'<line x1="350" x2="372" y1="6" y2="6" stroke="{VERMILLION}" stroke-width="2.5"/>'
        '<text x="378" y="11">occupancy at the end of the interval (people)</text>'
        f'<text x="{plot_w}" y="11" text-anchor="end">local time</text></g></svg>'
    )
    return "".join(parts)


def _empty(css_class: str, text: str) -> str:
    return f'<svg class="{css_class}" viewBox="0 0 600 30" width="600"><text x="0" y="20">{text}</text></svg>'


def _nice_ticks(top: float) -> list[float]:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if top / step <= 6:
            return [step * i for i in range(int(top // step) + 1)]
    return [0.0, top]

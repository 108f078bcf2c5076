"""``edge-agent hq report --html FILE``: the journey report as one self-contained HTML page.

Per store and local day: the floor plan with dwell per zone as a heat map and zone-to-zone flows
as arrows, the click-and-collect funnel and its wait distribution, footfall and occupancy over
the day, notifications by template, suppressions by reason, outcomes when stores send them, and
gaps. Inline SVG and CSS only: no script, font or image from the network, as HQ desktops and
store laptops may be offline. Every figure drawn is also in a ``data-`` attribute or a table
cell, so the page can be read (and checked) without its pixels.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from html import escape

from edge_agent.hq.journey_figures import DayFigures, StoreFigures, StoreLayout
from edge_agent.hq.svg_charts import BLUE, GREEN, ORANGE, VERMILLION, attr, bars, floor_plan, footfall_chart
from edge_agent.hq.svg_charts import histogram as histogram_svg

PHASE_LABELS = {
    "arrived": "arrived in store", "at_counter": "at the counter",
    "counter_wait": "kept waiting at the counter", "collected": "collected",
    "left_uncollected": "left without collecting",
}  # fmt: skip
WAIT_BIN_WIDTHS_MIN = (1, 2, 5, 10, 15, 30, 60)
MAX_WAIT_BINS = 12
FLOW_ROWS_IN_ONE_COLUMN = 14  # beyond, the list runs in two columns beside the floor plan

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1a1a1a; background: #fff; margin: 24px 32px; max-width: 1216px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 22px; border-bottom: 3px solid #0072B2;
  padding-bottom: 4px; margin-top: 36px; } h3 { font-size: 19px; margin: 28px 0 8px; }
figure { margin: 0 0 20px; } svg { max-width: 100%; height: auto; }
.flows-tables { display: flex; gap: 28px; align-items: flex-start; }
figcaption { font-weight: 600; margin-bottom: 6px; }
.sub { color: #555; font-weight: 400; }
.grid { display: grid; grid-template-columns: 640px 1fr; gap: 16px 32px; align-items: start; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #ddd; vertical-align: top; }
td.num, th.num { text-align: right; }
.summary { margin-bottom: 18px; } .summary th { font-weight: 400; color: #555; font-size: 13px; }
.summary td { font-size: 20px; font-weight: 600; padding-right: 22px; }
svg text { font: 13px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  fill: #1a1a1a; }
svg .zone-name { font-weight: 600; font-size: 14px; } svg .zone-value { font-size: 13px; }
.note { background: #f4f4f4; border-left: 4px solid #E69F00; padding: 8px 12px; }
"""


def render_report(
    figures: Mapping[str, StoreFigures], layouts: Mapping[str, StoreLayout], title: str, source: str
) -> str:
    """The whole page: one section per store, one per local day inside it."""
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">From {escape(source)}. Days are each store\'s local days; durations in '
        "minutes; counts are messages HQ stored (each event once).</p>",
    ]
    if not figures:
        body.append('<p class="note">No store has reported to this database yet.</p>')
    for store_id, store in figures.items():
        body.append(_store_section(store, layouts.get(store_id)))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _store_section(store: StoreFigures, layout: StoreLayout | None) -> str:
    sid = attr(store.store_id)
    parts = [
        f'<section class="store" id="store-{sid}" data-store="{sid}">',
        f'<h2>Store {escape(store.store_id)} <span class="sub">({escape(store.timezone)})</span></h2>',
    ]
    parts.extend(_day_section(store.store_id, day, layout) for day in store.days)
    parts.append(_seq_gaps(store))
    parts.append("</section>")
    return "".join(parts)


def _day_section(store_id: str, day: DayFigures, layout: StoreLayout | None) -> str:
    key = f"{store_id}-{day.day.isoformat()}"
    return "".join(
        [
            f'<section class="day" id="day-{attr(key)}" data-store="{attr(store_id)}" '
            f'data-day="{day.day.isoformat()}">',
            f"<h3>{day.day:%A %d %B %Y}</h3>",
            _summary(day),
            '<div class="grid">',
            _plan(key, day, layout),
            _flows_table(day),
            "</div>",
            '<div class="grid">',
            _funnel(day),
            _waits(day),
            "</div>",
            _footfall(day),
            '<div class="grid">',
            _notifications(day),
            _suppressions(day),
            "</div>",
            _outcomes(day),
            _declared_gaps(day),
            "</section>",
        ]
    )


def _summary(day: DayFigures) -> str:
    mean = f"{day.visit_seconds / day.visits / 60:.1f} min" if day.visits else "-"
    peak = day.peak_occupancy
    peak_value = "" if peak is None else peak
    sent, held = sum(day.notifications.values()), sum(day.suppressed.values())
    rows = [
        ("visits", "customer visits", str(day.visits), day.visits),
        ("visit-seconds", "mean visit", mean, repr(day.visit_seconds)),
        ("footfall-entries", "entries (everyone)", str(day.footfall_entries), day.footfall_entries),
        ("footfall-exits", "exits", str(day.footfall_exits), day.footfall_exits),
        ("peak-occupancy", "peak occupancy", "-" if peak is None else f"{peak} people", peak_value),
        ("notifications", "notifications sent", str(sent), sent),
        ("suppressed", "notifications suppressed", str(held), held),
        ("collections", "C&amp;C collections", str(len(day.waits_s)), len(day.waits_s)),
    ]  # fmt: skip
    head = "".join(f"<th>{label}</th>" for _, label, _, _ in rows)
    cells = "".join(
        f'<td data-figure="{name}" data-value="{value}">{text}</td>' for name, _, text, value in rows
    )
    return f'<table class="summary"><tr>{head}</tr><tr>{cells}</tr></table>'


def _plan(key: str, day: DayFigures, layout: StoreLayout | None) -> str:
    caption = "<figcaption>Floor plan: where shoppers spent their time, and how they walked</figcaption>"
    if layout is None or not layout.has_floor_plan:
        return (
            f'<figure class="chart plan">{caption}<p class="note no-layout">No floor plan for this store: '
            "give HQ its configuration with <code>--store-config FILE</code> to draw the zones. The "
            "dwell per zone and the flows are in the tables.</p>"
            f"{_dwell_table(day.zone_dwell_s)}</figure>"
        )
    svg = floor_plan(layout, day.zone_dwell_s, day.flows, f"plan-{key}")
    drawn = {zone.zone_id for zone in layout.zones if len(zone.polygon) >= 3}
    elsewhere = {zone: s for zone, s in day.zone_dwell_s.items() if zone not in drawn}
    extra = (
        f'<p class="note">Zones the floor plan does not draw:</p>{_dwell_table(elsewhere)}'
        if elsewhere
        else ""
    )
    return f'<figure class="chart plan">{caption}{svg}{extra}</figure>'


def _dwell_table(dwell_s: Mapping[str, float]) -> str:
    rows = "".join(
        f'<tr class="dwell" data-zone="{attr(zone)}" data-dwell-s="{seconds}"><td>{escape(zone)}</td>'
        f'<td class="num">{seconds / 60:.0f}</td></tr>'
        for zone, seconds in sorted(dwell_s.items(), key=lambda kv: -kv[1])
    )
    return f'<table class="dwell-table"><tr><th>zone</th><th class="num">dwell, min</th></tr>{rows}</table>'


def _flows_table(day: DayFigures) -> str:
    ordered = sorted(day.flows.items(), key=lambda kv: (-kv[1], kv[0]))
    rows = [
        f'<tr class="flow-row"><td>{escape(a)}</td><td>{escape(b)}</td>'
        f'<td class="num" data-from="{attr(a)}" data-to="{attr(b)}" data-count="{n}">{n}</td></tr>'
        for (a, b), n in ordered
    ] or ['<tr><td colspan="3">no walks between zones this day</td></tr>']
    half = -(-len(rows) // 2) if len(rows) > FLOW_ROWS_IN_ONE_COLUMN else len(rows)
    tables = "".join(
        '<table class="flows-table"><tr><th>from</th><th>to</th><th class="num">walks</th></tr>'
        f"{''.join(rows[start : start + half])}</table>"
        for start in range(0, len(rows), half)
    )
    return (
        '<figure class="chart flows"><figcaption>Walks from zone to zone <span class="sub">(consecutive '
        "zones of a visit, busiest first)</span></figcaption>"
        f'<div class="flows-tables">{tables}</div></figure>'
    )


def _funnel(day: DayFigures) -> str:
    arrived = day.funnel["arrived"]
    rows = [
        (
            f"{PHASE_LABELS[phase]}"
            + (f" ({count / arrived:.0%})" if arrived and phase != "arrived" else ""),
            float(count),
            f'data-phase="{phase}" data-count="{count}"',
        )
        for phase, count in day.funnel.items()
    ]
    return (
        '<figure class="chart funnel"><figcaption>Click &amp; collect: orders at each step '
        '<span class="sub">(share of arrivals)</span></figcaption>'
        f"{bars(rows, 'funnel-bars', GREEN, ' orders')}</figure>"
    )


def wait_bins(waits_s: Sequence[float]) -> list[tuple[float, float, int]]:
    """(from minute, to minute, collections) over the waits, in bins of a round width."""
    if not waits_s:
        return []
    longest = max(waits_s) / 60
    width = next((w for w in WAIT_BIN_WIDTHS_MIN if longest / w < MAX_WAIT_BINS), WAIT_BIN_WIDTHS_MIN[-1])
    count = int(longest // width) + 1
    bins = [0] * count
    for wait in waits_s:
        bins[min(int(wait / 60 // width), count - 1)] += 1
    return [(i * width, (i + 1) * width, n) for i, n in enumerate(bins)]


def _waits(day: DayFigures) -> str:
    median = _median(day.waits_s)
    sub = f"median {median / 60:.1f} min, {len(day.waits_s)} collections" if median is not None else "none"
    median_attr = "" if median is None else repr(median)
    return (
        f'<figure class="chart waits" data-median-s="{median_attr}" data-collections="{len(day.waits_s)}">'
        f'<figcaption>Wait from arrival to collection <span class="sub">({sub})</span></figcaption>'
        f"{histogram_svg(wait_bins(day.waits_s))}</figure>"
    )


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _footfall(day: DayFigures) -> str:
    return (
        '<figure class="chart footfall-chart"><figcaption>Footfall and occupancy over the day '
        '<span class="sub">(everyone, anonymous; people per footfall interval)</span></figcaption>'
        f"{footfall_chart(day.footfall)}</figure>"
    )


def _notifications(day: DayFigures) -> str:
    return _counted_bars(
        day.notifications, "template", "notifications", "notification-bars", BLUE,
        "Notifications sent by template", "(audience:template)",
    )  # fmt: skip


def _suppressions(day: DayFigures) -> str:
    return _counted_bars(
        day.suppressed, "reason", "suppressions", "suppression-bars", ORANGE,
        "Notifications suppressed by reason", "(a rule wanted to send, a guard stopped it)",
    )  # fmt: skip


def _counted_bars(
    counts: Mapping[str, int], key: str, figure: str, css: str, colour: str, title: str, sub: str
) -> str:
    """A bar per key, busiest first, each carrying ``data-<key>`` and ``data-count`` for readers."""
    rows = [
        (name, float(n), f'data-{key}="{attr(name)}" data-count="{n}"')
        for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    return (
        f'<figure class="chart {figure}"><figcaption>{title} '
        f'<span class="sub">{sub}</span></figcaption>'
        f"{bars(rows, css, colour, '')}</figure>"
    )


def _outcomes(day: DayFigures) -> str:
    if not day.outcomes:
        return (
            '<figure class="chart outcomes"><figcaption>Notification outcomes</figcaption>'
            '<p class="note no-outcomes">No outcomes reported for this day: no customer notification '
            "was decided.</p></figure>"
        )
    rows = [
        (key, float(n), f'data-outcome="{attr(key)}" data-count="{n}"')
        for key, n in sorted(day.outcomes.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    rates = "".join(
        f'<li data-template="{attr(template)}" data-worked="{worked}" data-decided="{decided}">'
        f"{escape(template)}: {worked / decided:.0%} worked ({worked} of {decided})</li>"
        for template, (worked, decided) in day.outcome_rates.items()
    )
    return (
        '<figure class="chart outcomes"><figcaption>Notification outcomes '
        '<span class="sub">(template:outcome)</span></figcaption>'
        f"{bars(rows, 'outcome-bars', VERMILLION, '')}"
        f'<ul class="outcome-rates">{rates}</ul></figure>'
    )


def _declared_gaps(day: DayFigures) -> str:
    rows = "".join(
        f'<tr class="declared-gap"><td>{escape(g.stream)}</td><td>{escape(g.reason)}</td>'
        f'<td class="num" data-count="{g.count}">{g.count}</td>'
        f"<td>{_seq_range(g.first_seq, g.last_seq)}</td></tr>"
        for g in day.declared_gaps
    )
    empty = "" if rows else '<tr><td colspan="4">none: the store dropped nothing this day</td></tr>'
    return (
        '<figure class="chart declared-gaps"><figcaption>Messages the store dropped '
        '<span class="sub">(gap.v1: known, never sent)</span></figcaption>'
        '<table class="gaps-table"><tr><th>stream</th><th>reason</th><th class="num">messages</th>'
        f"<th>seq</th></tr>{rows}{empty}</table></figure>"
    )


def _seq_range(first: int | None, last: int | None) -> str:
    if first is None:
        return "-"
    return str(first) if last in (None, first) else f"{first}-{last}"


def _seq_gaps(store: StoreFigures) -> str:
    rows = "".join(
        f'<tr class="seq-gap" data-boot-id="{attr(g.boot_id or "")}" data-stream="{attr(g.stream)}" '
        f'data-missing="{g.missing}" data-highest-seq="{g.highest_seq}"><td>{escape(g.stream)}</td>'
        f'<td>{escape(g.boot_id or "-")}</td><td class="num">{g.missing}</td>'
        f'<td class="num">{g.highest_seq}</td></tr>'
        for g in store.seq_gaps
    )
    empty = "" if rows else '<tr><td colspan="4">none: HQ has every numbered message</td></tr>'
    return (
        '<figure class="chart seq-gaps"><figcaption>Messages HQ never received '
        '<span class="sub">(missing seq numbers, per agent start and stream, all days)</span></figcaption>'
        '<table class="gaps-table"><tr><th>stream</th><th>boot</th><th class="num">missing</th>'
        f'<th class="num">highest seq</th></tr>{rows}{empty}</table></figure>'
    )

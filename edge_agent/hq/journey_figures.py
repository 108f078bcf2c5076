"""The journey report's figures per store and local day, from the events HQ stored.

Pure: it takes what the consumer's ``events`` table holds (store id, schema, decoded payload), in
any order, and the layouts of the stores HQ was given, and returns numbers; the HTML report
(``html_report``) draws them. A day is the store's local day (its ``store.timezone``; UTC for a
store without a layout). A visit counts on the day it started, with its dwell per zone and its
zone-to-zone steps; an order on the day of its first message; a footfall interval on the day it
started; notifications, suppressions, outcomes and declared gaps on the day of their ``ts``.

Missing ``seq`` numbers per boot and stream (what HQ never received) are a store's, not a day's:
a gap can straddle midnight.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.core.events import UPLINK_MESSAGES
from edge_agent.core.settings import AgentConfig
from edge_agent.hq.store import Gap

Point = tuple[float, float]
# The funnel's steps, in a visit's order: kept waiting at the counter is a step on the way to
# collection, left without collecting the way out of it (each counted once per order).
ORDER_PHASES = ("arrived", "at_counter", "counter_wait", "collected", "left_uncollected")
STREAMS = {str(m.model_fields["schema_name"].default): m.stream for m in UPLINK_MESSAGES}
# outcome.v1: each customer notification's effect (template, result, success), counted per day.
OUTCOME_SCHEMA = "outcome.v1"


@dataclass(frozen=True, slots=True)
class ZoneShape:
    zone_id: str
    name: str
    polygon: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class StoreLayout:
    """What the report draws a store's floor plan from: its zones' outlines and receivers."""

    store_id: str
    timezone: str
    zones: tuple[ZoneShape, ...]
    receivers: tuple[tuple[str, Point], ...]

    @classmethod
    def from_config(cls, config: AgentConfig) -> StoreLayout:
        return cls(
            store_id=config.store.id,
            timezone=config.store.timezone,
            zones=tuple(ZoneShape(z.id, z.name or z.id, tuple(z.polygon)) for z in config.zones),
            receivers=tuple((r.id, r.position) for r in config.receivers if r.position is not None),
        )

    @property
    def has_floor_plan(self) -> bool:
        return any(len(zone.polygon) >= 3 for zone in self.zones)


@dataclass(frozen=True, slots=True)
class FootfallInterval:
    start: datetime  # local time of the store
    end: datetime
    entries: int
    exits: int
    occupancy: int


@dataclass(frozen=True, slots=True)
class DeclaredGap:
    """A gap.v1 record: messages the store itself dropped, and why."""

    reason: str
    stream: str
    count: int
    first_seq: int | None
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class SeqGap:
    """Missing ``seq`` numbers HQ found in one boot's stream (as ``hq report`` counts them)."""

    boot_id: str | None
    stream: str
    missing: int
    highest_seq: int


@dataclass(frozen=True, slots=True)
class DayFigures:
    day: date
    visits: int
    visit_seconds: float
    zone_dwell_s: dict[str, float]
    flows: dict[tuple[str, str], int]  # (from zone, to zone) -> consecutive legs
    funnel: dict[str, int]  # phase -> orders that reached it, for each of ORDER_PHASES
    waits_s: tuple[float, ...]  # arrival to collection, one per collection
    footfall: tuple[FootfallInterval, ...]  # in time order
    notifications: dict[str, int]  # "audience:template" -> sent
    suppressed: dict[str, int]  # reason -> suppressed
    outcomes: dict[str, int]  # "template:outcome" -> count
    declared_gaps: tuple[DeclaredGap, ...]
    # template -> (outcomes that worked, outcomes decided either way); not_measured ones left out
    outcome_rates: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def footfall_entries(self) -> int:
        return sum(i.entries for i in self.footfall)

    @property
    def footfall_exits(self) -> int:
        return sum(i.exits for i in self.footfall)

    @property
    def peak_occupancy(self) -> int | None:
        return max((i.occupancy for i in self.footfall), default=None)


@dataclass(frozen=True, slots=True)
class StoreFigures:
    store_id: str
    timezone: str
    days: tuple[DayFigures, ...]  # in date order
    seq_gaps: tuple[SeqGap, ...]


StoredEvent = tuple[str, str, Mapping[str, Any]]  # store_id, schema, payload


def decoded(rows: Iterable[tuple[str, str, str]]) -> Iterator[StoredEvent]:
    """Stored events (``HqStore.events()``: store, schema, payload as JSON text) as
    ``journey_figures`` takes them."""
    for store_id, schema, payload in rows:
        yield store_id, schema, json.loads(payload)


def journey_figures(
    events: Iterable[StoredEvent],
    layouts: Mapping[str, StoreLayout] | None = None,
    gaps: Iterable[Gap] | None = None,
) -> dict[str, StoreFigures]:
    """Every store's figures per local day, from its stored events.

    ``gaps``: the HQ store's gap table (``HqStore.gaps()``), which ``hq report`` shows too, so the
    page and the report name the same holes; without it they are counted from the events."""
    layouts = layouts or {}
    stores: dict[str, _Store] = {}
    for store_id, schema, payload in events:
        store = stores.get(store_id)
        if store is None:
            layout = layouts.get(store_id)
            store = stores[store_id] = _Store(ZoneInfo(layout.timezone if layout else "UTC"))
        store.add(schema, payload)
    figures = {store_id: store.figures(store_id) for store_id, store in sorted(stores.items())}
    if gaps is not None:
        table: dict[str, list[SeqGap]] = {}
        for gap in gaps:
            table.setdefault(gap.store_id, []).append(
                SeqGap(gap.boot_id, gap.stream, gap.missing, gap.highest_seq)
            )
        figures = {
            store_id: dataclasses.replace(
                f, seq_gaps=tuple(sorted(table.get(store_id, []), key=lambda g: (g.stream, g.boot_id or "")))
            )
            for store_id, f in figures.items()
        }
    return figures


@dataclass(slots=True)
class _Day:
    visits: int = 0
    visit_seconds: float = 0.0
    zone_dwell_s: Counter[str] = field(default_factory=Counter)
    flows: Counter[tuple[str, str]] = field(default_factory=Counter)
    footfall: list[FootfallInterval] = field(default_factory=list)
    notifications: Counter[str] = field(default_factory=Counter)
    suppressed: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    declared_gaps: list[DeclaredGap] = field(default_factory=list)
    worked: Counter[str] = field(default_factory=Counter)
    decided: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class _Order:
    first: datetime
    phases: set[str] = field(default_factory=set)
    waits_s: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Store:
    zone: ZoneInfo
    days: defaultdict[date, _Day] = field(default_factory=lambda: defaultdict(_Day))
    orders: dict[str, _Order] = field(default_factory=dict)
    seqs: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (count, max)

    def local(self, stamp: str) -> datetime:
        return datetime.fromisoformat(stamp).astimezone(self.zone)

    def add(self, schema: str, body: Mapping[str, Any]) -> None:
        self._count_seq(schema, body)
        if schema == "visit.v1":
            if body["phase"] == "ended":
                self._visit(body)
        elif schema == "footfall.v1":
            start = self.local(body["interval_start"])
            self.days[start.date()].footfall.append(
                FootfallInterval(
                    start, self.local(body["interval_end"]), body["entries"], body["exits"], body["occupancy"]
                )
            )
        elif schema == "order.v1":
            self._order(body)
        else:
            self._dated(schema, body)

    def _dated(self, schema: str, body: Mapping[str, Any]) -> None:
        """Messages that count on the day of their ``ts``."""
        if schema == "notification.v1":
            day = self.days[self.local(body["ts"]).date()]
            day.notifications[f"{body['audience']}:{body['template']}"] += 1
        elif schema == "suppressed.v1":
            self.days[self.local(body["ts"]).date()].suppressed[body["reason"]] += 1
        elif schema == "gap.v1":
            self.days[self.local(body["ts"]).date()].declared_gaps.append(
                DeclaredGap(
                    body["reason"], body["dropped_stream"], body["count"], body.get("first_seq"),
                    body.get("last_seq"),
                )
            )  # fmt: skip
        elif schema == OUTCOME_SCHEMA:
            outcome = body.get("outcome") or body.get("result") or "reported"
            day = self.days[self.local(body["ts"]).date()]
            day.outcomes[f"{body.get('template', '?')}:{outcome}"] += 1
            if body.get("success") is not None:
                day.decided[body.get("template", "?")] += 1
                day.worked[body.get("template", "?")] += bool(body["success"])

    def _visit(self, body: Mapping[str, Any]) -> None:
        day = self.days[self.local(body["started_at"]).date()]
        day.visits += 1
        day.visit_seconds += body.get("duration_s") or 0.0
        path = body.get("path", [])
        for leg in path:
            day.zone_dwell_s[leg["zone"]] += leg["dwell_s"]
        for here, there in itertools.pairwise(path):
            if here["zone"] != there["zone"]:
                day.flows[here["zone"], there["zone"]] += 1

    def _order(self, body: Mapping[str, Any]) -> None:
        ts = self.local(body["ts"])
        order = self.orders.setdefault(body["order_id"], _Order(ts))
        order.first = min(order.first, ts)
        order.phases.add(body["phase"])
        if body.get("arrival_to_collection_s") is not None:
            order.waits_s.append(body["arrival_to_collection_s"])

    def _count_seq(self, schema: str, body: Mapping[str, Any]) -> None:
        seq, boot_id = body.get("seq"), body.get("boot_id")
        if seq is None:
            return
        key = (boot_id or "", STREAMS.get(schema, schema))
        count, top = self.seqs.get(key, (0, 0))
        self.seqs[key] = (count + 1, max(top, seq))

    def figures(self, store_id: str) -> StoreFigures:
        funnels: defaultdict[date, Counter[str]] = defaultdict(Counter)
        waits: defaultdict[date, list[float]] = defaultdict(list)
        for order in self.orders.values():
            day = order.first.date()
            _ = self.days[day]  # an order alone still makes its day
            funnels[day].update(order.phases)
            waits[day].extend(order.waits_s)
        days = tuple(
            DayFigures(
                day=day,
                visits=d.visits,
                visit_seconds=d.visit_seconds,
                zone_dwell_s=dict(d.zone_dwell_s),
                flows=dict(d.flows),
                funnel={phase: funnels[day][phase] for phase in ORDER_PHASES},
                waits_s=tuple(sorted(waits[day])),
                footfall=tuple(sorted(d.footfall, key=lambda i: i.start)),
                notifications=dict(d.notifications),
                suppressed=dict(d.suppressed),
                outcomes=dict(d.outcomes),
                declared_gaps=tuple(d.declared_gaps),
                outcome_rates={t: (d.worked[t], n) for t, n in sorted(d.decided.items())},
            )
            for day, d in sorted(self.days.items())
        )
        gaps = tuple(
            SeqGap(boot_id, stream, top - count, top)
            for (boot_id, stream), (count, top) in sorted(self.seqs.items())
            if top > count
        )
        return StoreFigures(store_id, self.zone.key, days, gaps)

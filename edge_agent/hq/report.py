"""``edge-agent hq report``: per-store journey figures from what the HQ consumer stored.

Visits, dwell per zone, footfall, notifications sent and suppressed, click-and-collect waits and
conversion, orders left uncollected, staff alerts, loyalty check-ins and coupon redemptions, the
share of each template's notifications that worked (``outcome.v1``), each store's latest status,
and the gaps: missing ``seq`` per store, boot and stream (delivery is at-least-once and
deduplicated, so a gap is a message HQ never got; see docs/hq.md).
``report`` gives the figures (``--json`` prints them as they are), ``report_blocks`` their text.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from rich import box
from rich.console import Group
from rich.constrain import Constrain
from rich.table import Table
from rich.text import Text

from edge_agent.hq.store import DatabaseTarget, open_store

LABELS = (
    "status", "visits", "mean visit", "top zones by dwell", "footfall", "notifications",
    "suppressed", "C&C collected (median wait)", "conversion", "gaps",
    "C&C left uncollected", "staff alerts", "check-ins", "redemptions", "outcomes (worked)",
    "C&C kept waiting",
)  # fmt: skip
TOP_ZONES = 3
BLOCK_WIDTH = 80  # a terminal's default width


def report(db: DatabaseTarget) -> dict[str, dict[str, Any]]:
    """Per-store journey figures from the stored events (a SQLite file or a PostgreSQL URL)."""
    store = open_store(db, "edge-agent-hq-report")
    stores: dict[str, dict[str, Any]] = {}
    try:
        for store_id, schema, payload in store.events():
            _count(stores.setdefault(store_id, _empty_figures()), schema, json.loads(payload))
        for gap in store.gaps():  # kept by the consumer as events arrive (the gaps table)
            stores.setdefault(gap.store_id, _empty_figures())["gaps"].append(
                {"boot_id": gap.boot_id, "stream": gap.stream, "missing": gap.missing,
                 "highest_seq": gap.highest_seq}
            )  # fmt: skip
        for store_id, state in store.statuses():
            stores.setdefault(store_id, _empty_figures())["status"] = state
    finally:
        store.close()
    for figures in stores.values():
        collected = sorted(figures.pop("collection_s"))
        figures["collections"] = len(collected)
        figures["arrival_to_collection_median_s"] = statistics.median(collected) if collected else None
        converted = len(figures.pop("visits_with_purchase"))
        figures["visits_with_purchase"] = converted
        figures["conversion"] = round(converted / figures["visits"], 3) if figures["visits"] else None
        figures["counter_waits"] = len(figures.pop("orders_kept_waiting"))
    return stores


def _count(figures: dict[str, Any], schema: str, body: dict[str, Any]) -> None:
    """Add one stored message to its store's figures."""
    figures["events"] += 1
    if schema == "visit.v1" and body["phase"] == "ended":
        figures["visits"] += 1
        figures["visit_seconds"] += body.get("duration_s") or 0.0
        for leg in body.get("path", []):
            figures["zone_dwell_s"][leg["zone"]] = (
                figures["zone_dwell_s"].get(leg["zone"], 0.0) + leg["dwell_s"]
            )
    elif schema == "footfall.v1":
        figures["footfall_entries"] += body["entries"]
    elif schema == "notification.v1":
        key = f"{body['audience']}:{body['template']}"
        figures["notifications_sent"][key] = figures["notifications_sent"].get(key, 0) + 1
    elif schema == "suppressed.v1":
        reason = body["reason"]
        figures["notifications_suppressed"][reason] = figures["notifications_suppressed"].get(reason, 0) + 1
    elif schema == "order.v1":
        _count_order(figures, body)
    elif schema == "staff_alert.v1":
        figures["staff_alerts"][body["template"]] = figures["staff_alerts"].get(body["template"], 0) + 1
    elif schema == "check_in.v1":
        figures["check_ins"] += 1
    elif schema == "redemption.v1":
        figures["redemptions"] += 1
    elif schema == "outcome.v1" and body.get("success") is not None:
        worked, decided = figures["outcomes"].get(body["template"], (0, 0))
        figures["outcomes"][body["template"]] = (worked + bool(body["success"]), decided + 1)
    elif schema == "purchase.v1" and body.get("visit_id"):
        figures["visits_with_purchase"].add(body["visit_id"])


def _count_order(figures: dict[str, Any], body: dict[str, Any]) -> None:
    if body.get("arrival_to_collection_s") is not None:
        figures["collection_s"].append(body["arrival_to_collection_s"])
    elif body.get("phase") == "left_uncollected":
        figures["left_uncollected"] += 1
    elif body.get("phase") == "counter_wait":
        figures["orders_kept_waiting"].add(body["order_id"])  # reminders repeat: orders count once


def _empty_figures() -> dict[str, Any]:
    return {
        "events": 0, "visits": 0, "visit_seconds": 0.0, "zone_dwell_s": {}, "footfall_entries": 0,
        "notifications_sent": {}, "notifications_suppressed": {}, "collection_s": [],
        "visits_with_purchase": set(), "gaps": [], "status": None, "left_uncollected": 0,
        "staff_alerts": {}, "check_ins": 0, "redemptions": 0, "outcomes": {},
        "orders_kept_waiting": set(),
    }  # fmt: skip


def report_blocks(figures: dict[str, dict[str, Any]], title: str) -> Group:
    """The figures of ``report`` for a terminal of 80 columns: one block per store, stores in
    order, each a short table of figure and value, a figure made of several parts (zones,
    notifications, gaps) on one line per part. Durations are in minutes. Counts stay counts (0
    visits is what HQ stored); a figure derived from nothing (a mean, a median, a share, a list)
    is "-", not a zero dressed as a measurement, and no gap is "none"."""
    if not figures:
        return Group(Text(title), Text("no store has reported to this database yet"))
    return Group(Text(title), *(_store_block(store_id, f) for store_id, f in sorted(figures.items())))


def _store_block(store_id: str, f: dict[str, Any]) -> Constrain:
    """One store's block, as wide as the terminal up to ``BLOCK_WIDTH``, so blocks line up."""
    table = Table(
        title=Text(f"store {store_id}"), title_justify="left", show_header=False, box=box.ROUNDED, expand=True
    )
    table.add_column("figure", no_wrap=True)
    # Values fold rather than end in "…": a cut figure would be a wrong one.
    table.add_column("value", overflow="fold", ratio=1)
    for label, value in zip(LABELS, _store_values(f), strict=True):
        table.add_row(label, Text(value))  # Text: what stores send is never read as markup
    return Constrain(table, width=BLOCK_WIDTH)


def _store_values(f: dict[str, Any]) -> tuple[str, ...]:
    """The values of ``LABELS``, in order, for one store's figures."""
    zones = sorted(f["zone_dwell_s"].items(), key=lambda kv: -kv[1])[:TOP_ZONES]
    median = f["arrival_to_collection_median_s"]
    gaps = f["gaps"]
    return (
        f["status"] or "-",
        str(f["visits"]),
        f"{f['visit_seconds'] / f['visits'] / 60:.1f} min" if f["visits"] else "-",
        "\n".join(f"{z} {s / 60:.0f} min" for z, s in zones) or "-",
        str(f["footfall_entries"]),
        "\n".join(f"{k} {n}" for k, n in sorted(f["notifications_sent"].items())) or "-",
        "\n".join(f"{k} {n}" for k, n in sorted(f["notifications_suppressed"].items())) or "-",
        f"{f['collections']} ({median / 60:.1f} min)" if f["collections"] else "-",
        "-" if f["conversion"] is None else f"{f['conversion']:.0%}",
        "\n".join(
            [f"{sum(g['missing'] for g in gaps)} missing"]
            + [f"{g['stream']}: {g['missing']} (boot {g['boot_id']}, seq 1-{g['highest_seq']})" for g in gaps]
        )
        if gaps
        else "none",
        str(f.get("left_uncollected", 0)),
        "\n".join(f"{k} {n}" for k, n in sorted(f.get("staff_alerts", {}).items())) or "-",
        str(f.get("check_ins", 0)),
        str(f.get("redemptions", 0)),
        "\n".join(f"{t} {w / n:.0%} of {n}" for t, (w, n) in sorted(f.get("outcomes", {}).items())) or "-",
        str(f.get("counter_waits", 0)),
    )

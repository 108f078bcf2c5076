"""What the demo's shoppers do besides walking, so the day exercises every journey rule.

The store simulator (``simulate``) walks shoppers through the floor plan and makes their radio;
this module decides the behaviour the rules react to, on top of those walks:

- click-and-collect: every other collecting customer has the order handed over a minute or so
  after reaching the counter (HQ sends ``collected``); the others are kept waiting at the
  counter and leave without it (counter wait, left uncollected);
- a few app customers linger in a department where staff can help (assistance);
- twice a day a group of anonymous shoppers queues at the tills at once (queue alert);
- some app customers buy at the till (``receipts.v1``, then a thank-you coupon at the end of the
  visit), and some of them redeem that coupon online later the same day (``redemption.v1``).

Walks are changed in place before any sighting is made, with their own random stream, so the
simulator's plan and radio draw exactly what they drew before.
"""

from __future__ import annotations

import json
import random
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from edge_agent.core.layout import Point, StoreLayout
from edge_agent.tools.simulate import Shopper

# Kept waiting at the counter this much longer than the walk planned: past the demo's
# counter_wait.after_s (demo.toml), so staff hear it, and still inside the visit.
COUNTER_WAIT_EXTRA_S = 420.0
# Staff hand a collected order over this long after the customer reaches the counter.
HANDOVER_S = 75.0
# Lingering in a department this much longer: past the demo's assist.after_s.
LINGER_EXTRA_S = 300.0
# Two queues a day, at these shares of the opening hours (lunch and evening in a 9-21 day), of
# this many shoppers waiting this long.
QUEUE_AT = (0.35, 0.8)
QUEUE_SIZE = 10
QUEUE_WAIT_S = 240.0
# The till the queue forms at, the department where help is offered (demo.toml).
QUEUE_ZONE = "checkout"
ASSIST_ZONE = "electronics"
COLLECT_ZONE = "counter"
# What the buyers buy, and the related-product offer the thank-you gives (offers.v1).
PURCHASE_SKU = "SKU-2001"
OFFER = {
    "offer_id": "OF-DEMO-1",
    "match_sku": PURCHASE_SKU,
    "coupon": "GRIND10",
    "product": "a coffee grinder",
}
# A redeemed coupon comes back on an online order this long after the visit ended.
REDEEM_AFTER_S = 1200.0


@dataclass(frozen=True, slots=True)
class Collector:
    customer_id: str
    order_id: str


def plan_behaviour(
    shoppers: list[Shopper],
    layout: StoreLayout,
    collectors: Sequence[Collector],
    seed: int,
    day: date,
    timezone: str,
    open_hours: tuple[int, int],
) -> list[tuple[float, str, bytes]]:
    """Change the walks in place (waits, lingering, queues) and return HQ's downlinks timed by
    the day: ``(when, kind, payload)``."""
    rng = random.Random(f"{seed}:behaviour")
    tz = zoneinfo.ZoneInfo(timezone)
    closing = datetime.combine(day, time(open_hours[1]), tz).timestamp()
    by_customer = {s.customer.customer_id: s for s in shoppers if s.customer is not None}
    timed: list[tuple[float, str, bytes]] = []
    for index, collector in enumerate(sorted(collectors, key=lambda c: c.customer_id)):
        shopper = by_customer.get(collector.customer_id)
        if shopper is None:
            continue
        if index % 2 == 0:
            _linger(shopper, layout, COLLECT_ZONE, COUNTER_WAIT_EXTRA_S)  # never handed over
            continue
        reached = _first_time_in(shopper, layout, COLLECT_ZONE)
        if reached is not None:
            timed.append((reached + HANDOVER_S, "orders", _collected(collector)))
    collecting = {c.customer_id for c in collectors}
    others = sorted(
        (s for customer_id, s in by_customer.items() if customer_id not in collecting),
        key=lambda s: s.shopper_id,
    )
    for index, shopper in enumerate(others):
        assert shopper.customer is not None
        if index % 4 == 1:
            _linger(shopper, layout, ASSIST_ZONE, LINGER_EXTRA_S)
        if index % 2 == 0:
            customer_id = shopper.customer.customer_id
            timed.append((shopper.leave - 30.0, "receipts", _receipt(f"R-{customer_id}", customer_id, [])))
            if shopper.leave + REDEEM_AFTER_S < closing:
                online = _receipt(f"R-{customer_id}-online", customer_id, [str(OFFER["coupon"])])
                timed.append((shopper.leave + REDEEM_AFTER_S, "receipts", online))
    opening = datetime.combine(day, time(open_hours[0]), tz).timestamp()
    for share in QUEUE_AT:
        start = round(opening + share * (closing - opening))
        if start + QUEUE_WAIT_S < closing and layout.entrance is not None and QUEUE_ZONE in layout.polygons:
            shoppers.extend(_queue(rng, layout, start, len(shoppers)))
    return sorted(timed, key=lambda item: item[0])


def offers_downlink(day: date) -> bytes:
    return json.dumps(
        {"schema": "offers.v1", "message_id": "demo-offers-1", "full": True,
         "offers": [{**OFFER, "valid_from": f"{day.isoformat()}T00:00:00Z",
                     "valid_until": f"{date.fromordinal(day.toordinal() + 30).isoformat()}T00:00:00Z"}]}
    ).encode()  # fmt: skip


def _linger(shopper: Shopper, layout: StoreLayout, zone: str, extra_s: float) -> bool:
    """Make the shopper's first pause in ``zone`` ``extra_s`` longer (the rest of the walk later)."""
    times, points = shopper.times, shopper.points
    for j in range(1, len(points)):
        if points[j] == points[j - 1] and layout.zone_at(points[j]) == zone:
            times[j:] = [t + extra_s for t in times[j:]]
            return True
    return False


def _first_time_in(shopper: Shopper, layout: StoreLayout, zone: str) -> float | None:
    ts = shopper.arrive
    while ts <= shopper.leave:
        if layout.zone_at(shopper.position_at(ts)) == zone:
            return ts
        ts += 1.0
    return None


def _queue(rng: random.Random, layout: StoreLayout, start: float, numbered_from: int) -> list[Shopper]:
    """Anonymous shoppers walking in within a couple of minutes, waiting at the tills together."""
    assert layout.entrance is not None
    queue = []
    for i in range(QUEUE_SIZE):
        arrive = start + i * 15.0
        door, till = _inside(rng, layout, layout.entrance), _inside(rng, layout, QUEUE_ZONE)
        walk = 20.0  # across the entrance to the tills
        wait = QUEUE_WAIT_S - i * 15.0
        times = [arrive, arrive + 5.0, arrive + 5.0 + walk, arrive + 5.0 + walk + wait,
                 arrive + 10.0 + 2 * walk + wait]  # fmt: skip
        points: list[Point] = [door, door, till, till, door]
        queue.append(
            Shopper(
                f"queue-{numbered_from + i + 1:05d}", None, times, points, phase=rng.random(),
                offset_db=rng.gauss(0.0, 2.0), rotation_phase=rng.uniform(0, 900.0),
            )
        )  # fmt: skip
    return queue


def _inside(rng: random.Random, layout: StoreLayout, zone: str) -> Point:
    corners = layout.polygons[zone]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    for _ in range(100):
        point = (rng.uniform(min(xs) + 1.0, max(xs) - 1.0), rng.uniform(min(ys) + 1.0, max(ys) - 1.0))
        if layout.zone_at(point) == zone:
            return point
    return (sum(xs) / len(xs), sum(ys) / len(ys))


def _collected(collector: Collector) -> bytes:
    order = {"order_id": collector.order_id, "customer_id": collector.customer_id, "status": "collected",
             "version": 2, "pickup_point": "Counter B", "pickup_zone": COLLECT_ZONE}  # fmt: skip
    return json.dumps(
        {"schema": "orders.v1", "message_id": f"demo-collected-{collector.order_id}", "orders": [order]}
    ).encode()


def _receipt(receipt_id: str, customer_id: str, coupons: list[str]) -> bytes:
    items = [{"sku": PURCHASE_SKU, "quantity": 1, "price": 14.9, "category": "coffee"}]
    record = {
        "receipt_id": receipt_id,
        "customer_id": customer_id,
        "total": 14.9,
        "coupons": coupons,
        "items": items,
    }
    return json.dumps(
        {"schema": "receipts.v1", "message_id": f"demo-{receipt_id}", "receipts": [record]}
    ).encode()

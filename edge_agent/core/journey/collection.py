"""Click-and-collect after the arrival: a shopper kept waiting at the counter, and one who left
without the order. Pure; time is an argument.

- Counter wait: the shopper has been in the order's pickup zone for ``counter_wait.after_s``
  (one stay, from when they entered the zone) and the order is still ``ready`` -> staff are
  told (``staff.counter_wait``) and ``order.v1`` says ``counter_wait`` with the wait, again at
  most every ``counter_wait.repeat_s`` while the shopper waits.
- Left without collecting: the visit ends with the order still ready -> ``order.v1``
  ``left_uncollected`` with the time in the store and at the counter, and staff are told
  (``staff.left_uncollected``), so the order can be kept back or the customer called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.core.const import STILL_HERE_S
from edge_agent.core.events import Message
from edge_agent.core.journey.acting import Acts
from edge_agent.core.presence import OpenVisit
from edge_agent.core.registry import Customer
from edge_agent.core.settings import RulesSettings


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    customer_id: str
    status: str  # ready | collected | cancelled
    pickup_point: str
    pickup_zone: str | None = None
    version: int = 0


@dataclass(slots=True)
class Arrival:
    """A ready order whose customer came in: the visit, when, and what staff heard since."""

    visit_id: str
    at: float
    at_counter: bool = False
    last_wait_alert: float | None = None
    left: bool = False  # the visit ended without the order handed over (reported once)


def counter_wait(arrival: Arrival, visit: OpenVisit, pickup_zone: str, after_s: float, repeat_s: float,
                 now: float) -> float | None:  # fmt: skip
    """The wait to report now (seconds in the pickup zone), or None: not there, not long enough,
    or staff were told less than ``repeat_s`` ago."""
    if visit.visit_id != arrival.visit_id or not visit.path or visit.path[-1].zone != pickup_zone:
        return None
    waited = stay_so_far(visit, now)
    if waited < after_s:
        return None
    if arrival.last_wait_alert is not None and now - arrival.last_wait_alert < repeat_s:
        return None
    arrival.last_wait_alert = now
    return waited


def time_in_zone(visit: OpenVisit, zone: str) -> float:
    """Seconds the visit spent in ``zone`` over all its stays (an ended visit's path is closed)."""
    return sum(stay.duration(visit.last_seen) for stay in visit.path if stay.zone == zone)


def stay_so_far(visit: OpenVisit, now: float) -> float:
    """How long the shopper has been in their current zone, 0 when they went silent.

    A zone that leads the current one ends the stay when its lead began (presence dates the move
    from then, once the lead has held); a shopper unheard for ``STILL_HERE_S`` is not there."""
    if not visit.path or now - visit.last_seen > STILL_HERE_S:
        return 0.0
    until = visit.pending_since if visit.pending_zone is not None else now
    return max(0.0, until - visit.path[-1].entered_at)


def counter_waits(
    acts: Acts,
    settings: RulesSettings,
    arrivals: Mapping[str, Arrival],
    orders: Mapping[str, Order],
    present: list[tuple[OpenVisit, Customer]],
    now: float,
) -> list[Message]:
    """``order.v1`` ``counter_wait`` and a staff reminder for each shopper kept waiting."""
    wait, cnc = settings.counter_wait, settings.click_and_collect
    by_customer = {visit.subject.id: (visit, customer) for visit, customer in present}
    messages: list[Message] = []
    for order_id, arrival in arrivals.items():
        order = orders.get(order_id)
        found = None if order is None else by_customer.get(order.customer_id)
        if order is None or found is None or order.status != "ready" or arrival.left:
            continue
        pickup_zone = order.pickup_zone or cnc.pickup_zone
        if pickup_zone is None:
            continue
        visit, customer = found
        waited = counter_wait(arrival, visit, pickup_zone, wait.after_s, wait.repeat_s, now)
        if waited is None:
            continue
        messages.append(
            acts.order_event(order_id, customer.customer_id, visit.visit_id, "counter_wait", now,
                             wait_s=round(waited, 3))
        )  # fmt: skip
        if cnc.staff_alerts:
            fields = {
                "order_id": order_id,
                "pickup_point": order.pickup_point,
                "wait_min": f"{waited / 60:.0f}",
            }
            data = {"order_id": order_id, "wait_s": f"{waited:.0f}"}
            messages.append(
                acts.notify(customer, visit, "staff.counter_wait", "service", now, cnc.notification_ttl_s,
                            data, fields, staff=True)
            )  # fmt: skip
    return messages


def left_uncollected(
    acts: Acts,
    settings: RulesSettings,
    arrivals: Mapping[str, Arrival],
    orders: Mapping[str, Order],
    visit: OpenVisit,
    customer: Customer,
    now: float,
) -> list[Message]:
    """``order.v1`` ``left_uncollected`` and a staff alert for each order the visit left behind."""
    if not settings.left_uncollected.enabled:
        return []
    cnc = settings.click_and_collect
    messages: list[Message] = []
    for order_id, arrival in arrivals.items():
        order = orders.get(order_id)
        if order is None or order.status != "ready" or arrival.visit_id != visit.visit_id or arrival.left:
            continue
        arrival.left = True  # announced; a later visit is not re-announced (as before)
        pickup_zone = order.pickup_zone or cnc.pickup_zone
        in_store = visit.last_seen - visit.started_at
        at_counter = time_in_zone(visit, pickup_zone) if pickup_zone else 0.0
        messages.append(
            acts.order_event(order_id, customer.customer_id, visit.visit_id, "left_uncollected", now,
                             time_in_store_s=round(in_store, 3), time_at_counter_s=round(at_counter, 3))
        )  # fmt: skip
        if settings.left_uncollected.staff_alerts:
            fields = {
                "order_id": order_id,
                "store_min": f"{in_store / 60:.0f}",
                "counter_min": f"{at_counter / 60:.0f}",
            }
            data = {"order_id": order_id, "pickup_point": order.pickup_point}
            messages.append(
                acts.notify(customer, visit, "staff.left_uncollected", "service", now, cnc.notification_ttl_s,
                            data, fields, staff=True)
            )  # fmt: skip
    return messages

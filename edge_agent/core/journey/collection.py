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

from dataclasses import dataclass

from edge_agent.core.const import STILL_HERE_S
from edge_agent.core.presence import OpenVisit


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

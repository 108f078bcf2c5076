"""Whether each customer notification worked: one ``outcome.v1`` once its effect is decided. Pure.

- A shelf-location push worked if the shopper entered one of the suggested items' zones within
  ``shelf_location.outcome_window_s``; it did not once the window or the visit ends.
- A click-and-collect arrival message worked if the shopper reached the pickup zone in that
  visit; it did not if the visit ended first.
- A coupon worked if its code comes back on a receipt (``redemption.v1``); it did not once its
  validity ends (``coupons``). An offer's code given to the customer again before they redeemed
  it belongs to the newer notification from then on: the older one is ``superseded`` (its
  success unknown).
- Anything else (a thank-you without a coupon, a check-in without one) has no effect the store
  can observe and says so at once (``not_measured``), so every notification has an outcome.

Pending outcomes are bounded (``MAX_PENDING_OUTCOMES``): past it the oldest is decided as not
having worked, which is what an unbounded wait would have concluded anyway. Every pending
outcome is noted in a ``Journal`` so it outlives a restart; one whose visit did not survive the
restart is decided, as not having worked, at the first tick.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

from edge_agent.core.const import MAX_PENDING_OUTCOMES
from edge_agent.core.events import Envelopes, NotificationMessage, OutcomeMessage, OutcomeResult
from edge_agent.core.journey.durable import OUTCOME, Journal

# What each kind of expectation reports when it is met and when it is not.
RESULTS: dict[str, tuple[OutcomeResult, OutcomeResult]] = {
    "zone": ("entered_zone", "zone_not_visited"),
    "counter": ("reached_counter", "counter_not_reached"),
}


@dataclass(frozen=True, slots=True)
class _Expectation:
    kind: str  # "zone" | "counter"
    event_id: str
    customer_id: str
    visit_id: str
    template: str
    sent_at: float
    deadline: float
    zones: frozenset[str]

    def record(self) -> dict[str, Any]:
        """As the state store keeps it (JSON: no infinite deadline, zones as a list)."""
        return {
            "kind": self.kind, "event_id": self.event_id, "customer_id": self.customer_id,
            "visit_id": self.visit_id, "template": self.template, "sent_at": self.sent_at,
            "deadline": None if self.deadline == float("inf") else self.deadline,
            "zones": sorted(self.zones),
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> _Expectation:
        deadline = record["deadline"]
        return cls(
            str(record["kind"]), str(record["event_id"]), str(record["customer_id"]),
            str(record["visit_id"]), str(record["template"]), float(record["sent_at"]),
            float("inf") if deadline is None else float(deadline), frozenset(record["zones"]),
        )  # fmt: skip


class Outcomes:
    def __init__(
        self, envelope: Envelopes, journal: Journal | None = None, limit: int = MAX_PENDING_OUTCOMES
    ) -> None:
        self._envelope = envelope
        self._limit = limit
        self._journal = Journal() if journal is None else journal
        self._pending: OrderedDict[str, _Expectation] = OrderedDict()  # event id -> expectation
        self._orphaned: list[_Expectation] = []  # restored, their visit gone: decided next tick

    def __len__(self) -> int:
        return len(self._pending)

    def expect(
        self,
        kind: str,
        notification: NotificationMessage,
        zones: frozenset[str],
        sent_at: float,
        deadline: float,
    ) -> list[OutcomeMessage]:
        """Wait for ``notification`` to show its effect: the shopper entering one of ``zones``
        before ``deadline`` (or before the visit ends)."""
        expectation = _Expectation(
            kind, notification.event_id, notification.customer_id, notification.visit_id,
            notification.template, sent_at, deadline, zones,
        )  # fmt: skip
        self._pending[notification.event_id] = expectation
        self._journal.put(OUTCOME, expectation.event_id, expectation.customer_id, expectation.record())
        decided: list[OutcomeMessage] = []
        while len(self._pending) > self._limit:
            _, oldest = self._pending.popitem(last=False)
            decided.append(self._decide(oldest, False, sent_at))
        return decided

    def restore(self, records: Iterable[dict[str, Any]], open_visits: Collection[str]) -> None:
        """The outcomes pending at the last stop (oldest first). One whose visit is still open
        waits on as before; one whose visit ended while the agent was down is decided at the
        next tick, as not having worked (the shopper left without the agent seeing it work)."""
        for record in sorted(records, key=lambda r: float(r["sent_at"])):
            expectation = _Expectation.from_record(record)
            if expectation.visit_id in open_visits:
                self._pending[expectation.event_id] = expectation
            else:
                self._orphaned.append(expectation)

    def zone_entered(self, customer_id: str, visit_id: str, zone: str, now: float) -> list[OutcomeMessage]:
        met = [
            e for e in self._pending.values()
            if e.visit_id == visit_id and e.customer_id == customer_id and zone in e.zones
            and now <= e.deadline
        ]  # fmt: skip
        for expectation in met:
            del self._pending[expectation.event_id]
        return [self._decide(e, True, now) for e in met]

    def visit_ended(self, visit_id: str, now: float) -> list[OutcomeMessage]:
        missed = [e for e in self._pending.values() if e.visit_id == visit_id]
        for expectation in missed:
            del self._pending[expectation.event_id]
        return [self._decide(e, False, min(now, e.deadline)) for e in missed]

    def expire(self, now: float) -> list[OutcomeMessage]:
        missed = [e for e in self._pending.values() if now > e.deadline]
        for expectation in missed:
            del self._pending[expectation.event_id]
        orphaned, self._orphaned = self._orphaned, []
        return [
            *(self._decide(e, False, e.deadline) for e in missed),
            *(self._decide(e, False, min(now, e.deadline)) for e in orphaned),
        ]

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: each pending outcome's window moves with the
        clock (an endless one stays endless), so it is decided as late as it would have been on a
        right clock, and the kept rows are rewritten with the new times at the next commit."""
        for event_id, e in self._pending.items():
            moved = replace(e, sent_at=e.sent_at + delta_s, deadline=e.deadline + delta_s)
            self._pending[event_id] = moved
            self._journal.put(OUTCOME, event_id, moved.customer_id, moved.record())
        self._orphaned = [
            replace(e, sent_at=e.sent_at + delta_s, deadline=e.deadline + delta_s) for e in self._orphaned
        ]

    def forget(self, customer_id: str) -> None:
        for event_id in [k for k, e in self._pending.items() if e.customer_id == customer_id]:
            self._journal.drop(OUTCOME, event_id, customer_id)
            del self._pending[event_id]
        self._orphaned = [e for e in self._orphaned if e.customer_id != customer_id]

    def decided(
        self, notification_event_id: str, customer_id: str, visit_id: str, template: str,
        result: OutcomeResult, success: bool | None, now: float, after_s: float | None,
    ) -> OutcomeMessage:  # fmt: skip
        return OutcomeMessage(
            **self._envelope.at(now), notification_event_id=notification_event_id,
            customer_id=customer_id, visit_id=visit_id, template=template, result=result,
            success=success, after_s=None if after_s is None else round(after_s, 3),
        )  # fmt: skip

    def _decide(self, expectation: _Expectation, met: bool, now: float) -> OutcomeMessage:
        self._journal.drop(OUTCOME, expectation.event_id, expectation.customer_id)
        result = RESULTS[expectation.kind][0 if met else 1]
        return self.decided(
            expectation.event_id, expectation.customer_id, expectation.visit_id, expectation.template,
            result, met, now, now - expectation.sent_at,
        )  # fmt: skip

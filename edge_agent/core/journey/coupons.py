"""Coupon codes this store gave customers, so a till receipt carrying one names the notification
and the visit that issued it (``redemption.v1``). Pure; time is an argument.

A code is known per customer: an offer's code is the same for everyone who earned it, and the
receipt says whose it is. The map is bounded (``MAX_ISSUED_COUPONS``): past it, and past a code's
validity, a code is dropped and reported expired, so memory follows the store's coupons in
flight, not its history. Every change is noted in a ``Journal`` so the codes outlive a restart.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from edge_agent.core.const import MAX_ISSUED_COUPONS
from edge_agent.core.events import Envelopes, RedemptionMessage, utc
from edge_agent.core.journey.durable import COUPON, Journal


@dataclass(frozen=True, slots=True)
class IssuedCoupon:
    customer_id: str
    code: str
    notification_event_id: str
    template: str
    visit_id: str
    issued_at: float
    valid_until: float


class IssuedCoupons:
    def __init__(self, journal: Journal | None = None, limit: int = MAX_ISSUED_COUPONS) -> None:
        self._limit = limit
        self._journal = Journal() if journal is None else journal
        self._codes: OrderedDict[tuple[str, str], IssuedCoupon] = OrderedDict()  # oldest first

    def __len__(self) -> int:
        return len(self._codes)

    def issue(self, coupon: IssuedCoupon) -> tuple[IssuedCoupon | None, list[IssuedCoupon]]:
        """Remember a code given; returns the issue it replaces (the same offer's code given to
        the customer again: the newer notification owns it) and the oldest codes forgotten to
        stay within the bound."""
        key = (coupon.customer_id, coupon.code)
        replaced = self._codes.pop(key, None)
        self._codes[key] = coupon
        self._journal.put(COUPON, _key(coupon), coupon.customer_id, asdict(coupon))
        dropped = []
        while len(self._codes) > self._limit:
            dropped.append(self._codes.popitem(last=False)[1])
        return replaced, dropped

    def restore(self, records: Iterable[dict[str, Any]]) -> list[IssuedCoupon]:
        """The codes kept across a restart (oldest first); returns those past the bound."""
        dropped: list[IssuedCoupon] = []
        for record in sorted(records, key=lambda r: float(r["issued_at"])):
            coupon = IssuedCoupon(**record)
            self._codes[(coupon.customer_id, coupon.code)] = coupon
            while len(self._codes) > self._limit:
                dropped.append(self._codes.popitem(last=False)[1])
        return dropped

    def gone(self, coupon: IssuedCoupon) -> None:
        """A code decided (redeemed, expired or dropped past the bound): no longer kept."""
        self._journal.drop(COUPON, _key(coupon), coupon.customer_id)

    def redeem(self, customer_id: str, code: str, now: float) -> IssuedCoupon | None:
        """The issue of ``code`` to ``customer_id``, if this store gave it and it is still valid;
        a code redeems once."""
        coupon = self._codes.get((customer_id, code))
        if coupon is None or now >= coupon.valid_until:
            return None
        del self._codes[(customer_id, code)]
        self.gone(coupon)
        return coupon

    def expired(self, now: float) -> list[IssuedCoupon]:
        """Codes whose validity has ended by ``now``, forgotten as they are returned."""
        ended = [c for c in self._codes.values() if now >= c.valid_until]
        for coupon in ended:
            del self._codes[(coupon.customer_id, coupon.code)]
            self.gone(coupon)
        return ended

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: each code was issued, and stays valid until, the
        same moment on the corrected clock, so a step neither expires it early nor keeps it an
        hour late; the kept rows are rewritten with the new times at the next commit."""
        for key, coupon in self._codes.items():
            moved = replace(
                coupon, issued_at=coupon.issued_at + delta_s, valid_until=coupon.valid_until + delta_s
            )
            self._codes[key] = moved
            self._journal.put(COUPON, _key(moved), moved.customer_id, asdict(moved))

    def forget(self, customer_id: str) -> None:
        for key in [k for k in self._codes if k[0] == customer_id]:
            self.gone(self._codes.pop(key))


def _key(coupon: IssuedCoupon) -> str:
    """A kept code's row: the code is per customer (an offer's code is shared)."""
    return f"{coupon.customer_id}\n{coupon.code}"


def redemption_message(envelope: Envelopes, coupon: IssuedCoupon, receipt_id: str, visit_id: str | None,
                       now: float) -> RedemptionMessage:  # fmt: skip
    """A redeemed code linking the receipt to the notification and the visit that issued it."""
    return RedemptionMessage(
        **envelope.at(now), receipt_id=receipt_id, customer_id=coupon.customer_id, coupon=coupon.code,
        notification_event_id=coupon.notification_event_id, template=coupon.template,
        issued_visit_id=coupon.visit_id, issued_at=utc(coupon.issued_at), visit_id=visit_id,
    )  # fmt: skip

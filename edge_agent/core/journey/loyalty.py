"""Loyalty check-in: once per customer and local day of the store. Pure.

The first recognised visit of a local day of a customer with marketing consent is a check-in
(``check_in.v1`` for HQ's loyalty system, and a ``loyalty.check_in`` notification with the
reward). The date is the store's local date, so a shopper in at 23:50 and again at 00:10 checks
in twice: those are two days of the loyalty programme. Which customers checked in on which date
is bounded (``MAX_CHECK_INS``, oldest first).

The check-in comes at the start of the visit, just after the arrival messages (a click-and-collect
order, the shelf locations of a list), so the minimum gap between customer notifications would
refuse it almost every time and the shopper would never see the reward they were promised. It
is not sent first either: where to collect an order, or where the listed items are, is what the
shopper came for. Instead, a check-in message the minimum gap alone refused is held, and sent at
the first tick the guards allow it while the visit lasts, within its ``notification_ttl_s``
from the check-in (a welcome ten minutes late is no welcome). ``check_in.v1`` goes to HQ at once
either way. A held message the visit or its TTL outlived is a ``suppressed.v1`` saying so; any
other refusal (quiet hours, a cap, consent withdrawn) is final as for every notification. Held
messages are kept across a restart (``durable``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.core.const import MAX_CHECK_INS
from edge_agent.core.events import CheckInMessage, Message, NotificationMessage, SuppressedMessage
from edge_agent.core.journey.acting import Acts
from edge_agent.core.journey.durable import HELD, Journal
from edge_agent.core.presence import OpenVisit
from edge_agent.core.registry import Customer
from edge_agent.core.settings import CheckInSettings

TEMPLATE = "loyalty.check_in"
# The one refusal that passes with time inside a visit: a message it stopped is held.
HOLDS = "minimum gap"
TTL_PASSED = "minimum gap (held until its TTL passed)"
VISIT_ENDED = "minimum gap (held until the visit ended)"
HELD_REASON = "message held for the minimum gap"  # the journey log's line while it waits


@dataclass(frozen=True, slots=True)
class HeldCheckIn:
    """A check-in message waiting for the minimum gap: whose, which visit, since when, its code."""

    customer_id: str
    visit_id: str
    at: float
    code: str | None
    valid_until: float


class CheckIns:
    def __init__(self, timezone: str, journal: Journal | None = None, limit: int = MAX_CHECK_INS) -> None:
        self._tz = ZoneInfo(timezone)
        self._limit = limit
        self._journal = Journal() if journal is None else journal
        # customer id -> when they last checked in: the time, not its date, so a clock step
        # re-dates it and the local day is the one the corrected clock says (``shift``).
        self._last: OrderedDict[str, float] = OrderedDict()
        self._held: dict[str, HeldCheckIn] = {}  # customer id -> their check-in message held
        self._orphaned: list[HeldCheckIn] = []  # restored, their visit gone: suppressed next tick

    @property
    def holding(self) -> bool:
        """Whether a tick has held check-in messages to look at."""
        return bool(self._held or self._orphaned)

    def check_in(
        self, acts: Acts, settings: CheckInSettings, visit: OpenVisit, customer: Customer, now: float,
        new_code: Callable[[], str],
    ) -> list[Message]:  # fmt: skip
        """The day's first visit of a customer with marketing consent: ``check_in.v1`` and the
        notification (guarded like any other; quiet hours hush the message, not the check-in).
        Without consent it is refused (and audited) and not recorded, so consent given later in
        the day checks in at the next visit."""
        local_date = self.local_date(now)
        if self.done_on(customer.customer_id, local_date):
            return []
        code = None if settings.coupon_prefix is None else f"{settings.coupon_prefix}-{new_code()}"
        held = HeldCheckIn(customer.customer_id, visit.visit_id, now, code, now + settings.coupon_valid_s)
        message = self._notify(acts, settings, held, visit, customer, now)
        if not customer.consent_marketing:
            return [message]  # never a check-in without consent
        self.record(customer.customer_id, now)
        check_in = CheckInMessage(
            **acts.envelope.at(now), customer_id=customer.customer_id, visit_id=visit.visit_id,
            local_date=local_date, reward=settings.reward,
        )  # fmt: skip
        if isinstance(message, SuppressedMessage) and message.reason == HOLDS:
            self._hold(held)
            return [check_in, *acts.skip(visit, customer, "check_in", HELD_REASON, now)]
        return [check_in, *self._sent(acts, held, message, now)]

    def release(
        self, acts: Acts, settings: CheckInSettings, present: Iterable[tuple[OpenVisit, Customer]], now: float
    ) -> list[Message]:
        """Held check-in messages the guards now let through, or that waited past their TTL."""
        messages: list[Message] = [
            acts.suppressed(h.customer_id, h.visit_id, TEMPLATE, "customer", VISIT_ENDED, now)
            for h in self._orphaned
        ]
        self._orphaned = []
        if not self._held:
            return messages
        by_customer = {customer.customer_id: (visit, customer) for visit, customer in present}
        for held in list(self._held.values()):
            found = by_customer.get(held.customer_id)
            if found is None or found[0].visit_id != held.visit_id:
                continue  # the visit is ending: ``visit_ended`` says so
            visit, customer = found
            if now >= held.at + settings.notification_ttl_s:
                self._release(held)
                messages.append(acts.suppressed(held.customer_id, held.visit_id, TEMPLATE, "customer",
                                                TTL_PASSED, now))  # fmt: skip
                continue
            message = self._notify(acts, settings, held, visit, customer, now)
            if isinstance(message, SuppressedMessage) and message.reason == HOLDS:
                continue  # still within the gap: the refusal is not final yet
            self._release(held)
            messages += self._sent(acts, held, message, now)
        return messages

    def visit_ended(self, acts: Acts, visit_id: str, now: float) -> list[Message]:
        """A held message whose visit ended before the gap passed: never sent, and said so."""
        ended = [h for h in self._held.values() if h.visit_id == visit_id]
        for held in ended:
            self._release(held)
        return [
            acts.suppressed(h.customer_id, h.visit_id, TEMPLATE, "customer", VISIT_ENDED, now) for h in ended
        ]

    def restore_held(self, records: Iterable[dict[str, Any]], open_visits: Collection[str]) -> None:
        """The messages held at the last stop: those of a restored visit are held on, the others
        are suppressed at the first tick (their visit ended while the agent was down)."""
        for record in records:
            held = HeldCheckIn(**record)
            if held.visit_id in open_visits:
                self._held[held.customer_id] = held
            else:
                self._orphaned.append(held)
                self._journal.drop(HELD, held.customer_id, held.customer_id)

    def local_date(self, now: float) -> str:
        return datetime.fromtimestamp(now, self._tz).date().isoformat()

    def done_on(self, customer_id: str, local_date: str) -> bool:
        last = self._last.get(customer_id)
        return last is not None and self.local_date(last) == local_date

    def record(self, customer_id: str, at: float) -> None:
        self._last.pop(customer_id, None)
        self._last[customer_id] = at
        while len(self._last) > self._limit:
            self._last.popitem(last=False)

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: a check-in made before it was made on the local
        day the corrected clock gives it (a box 3 h behind at 22:30 checked a shopper in at 01:30
        the next day), and a held message keeps its TTL and its coupon's validity in real time."""
        self._last = OrderedDict((c, at + delta_s) for c, at in self._last.items())
        for customer_id, held in self._held.items():
            moved = _moved(held, delta_s)
            self._held[customer_id] = moved
            self._journal.put(HELD, customer_id, customer_id, asdict(moved))
        self._orphaned = [_moved(h, delta_s) for h in self._orphaned]

    def forget(self, customer_id: str) -> None:
        self._last.pop(customer_id, None)
        held = self._held.get(customer_id)
        if held is not None:
            self._release(held)
        self._orphaned = [h for h in self._orphaned if h.customer_id != customer_id]

    def _hold(self, held: HeldCheckIn) -> None:
        self._held[held.customer_id] = held
        self._journal.put(HELD, held.customer_id, held.customer_id, asdict(held))

    def _release(self, held: HeldCheckIn) -> None:
        self._held.pop(held.customer_id, None)
        self._journal.drop(HELD, held.customer_id, held.customer_id)

    def _notify(
        self, acts: Acts, settings: CheckInSettings, held: HeldCheckIn, visit: OpenVisit, customer: Customer,
        now: float,
    ) -> Message:  # fmt: skip
        """The check-in message through the guards; it expires ``notification_ttl_s`` after the
        check-in, however long it was held."""
        coupon_text = ""
        if held.code is not None:
            until = datetime.fromtimestamp(held.valid_until, self._tz).date().isoformat()
            coupon_text = acts.templates.render(
                "loyalty.coupon", acts.language, coupon=held.code, valid_until=until
            )
        data = {"reward": settings.reward, **({"coupon": held.code} if held.code else {})}
        ttl = held.at + settings.notification_ttl_s - now
        return acts.notify(
            customer, visit, TEMPLATE, "marketing", now, ttl, data,
            {"reward": settings.reward, "coupon_text": coupon_text},
        )  # fmt: skip

    @staticmethod
    def _sent(acts: Acts, held: HeldCheckIn, message: Message, now: float) -> list[Message]:
        if held.code is not None and isinstance(message, NotificationMessage):
            return acts.issue(message, held.code, now, held.valid_until)  # outcome: redeemed or expired
        return acts.sent(message, now)


def _moved(held: HeldCheckIn, delta_s: float) -> HeldCheckIn:
    return replace(held, at=held.at + delta_s, valid_until=held.valid_until + delta_s)

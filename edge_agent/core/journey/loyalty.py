"""Loyalty check-in: once per customer and local day of the store. Pure.

The first recognised visit of a local day of a customer with marketing consent is a check-in
(``check_in.v1`` for HQ's loyalty system, and a ``loyalty.check_in`` notification with the
reward). The date is the store's local date, so a shopper in at 23:50 and again at 00:10 checks
in twice: those are two days of the loyalty programme. Which customers checked in on which date
is bounded (``MAX_CHECK_INS``, oldest first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from edge_agent.core.const import MAX_CHECK_INS
from edge_agent.core.events import CheckInMessage, Message, NotificationMessage
from edge_agent.core.identity import Customer
from edge_agent.core.journey.acting import Acts
from edge_agent.core.presence import OpenVisit
from edge_agent.core.settings import CheckInSettings


class CheckIns:
    def __init__(self, timezone: str, limit: int = MAX_CHECK_INS) -> None:
        self._tz = ZoneInfo(timezone)
        self._limit = limit
        self._last: OrderedDict[str, str] = OrderedDict()  # customer id -> local date checked in

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
        valid_until = now + settings.coupon_valid_s
        coupon_text = ""
        if code is not None:
            until = datetime.fromtimestamp(valid_until, self._tz).date().isoformat()
            coupon_text = acts.templates.render(
                "loyalty.coupon", acts.language, coupon=code, valid_until=until
            )
        data = {"reward": settings.reward, **({"coupon": code} if code else {})}
        message = acts.notify(
            customer, visit, "loyalty.check_in", "marketing", now, settings.notification_ttl_s, data,
            {"reward": settings.reward, "coupon_text": coupon_text},
        )  # fmt: skip
        if not customer.consent_marketing:
            return [message]  # never a check-in without consent
        self.record(customer.customer_id, local_date)
        check_in = CheckInMessage(
            **acts.envelope.at(now), customer_id=customer.customer_id, visit_id=visit.visit_id,
            local_date=local_date, reward=settings.reward,
        )  # fmt: skip
        if code is not None and isinstance(message, NotificationMessage):
            acts.issue(message, code, now, valid_until)  # its outcome: redeemed or expired
            return [check_in, message]
        return [check_in, *acts.sent(message, now)]

    def local_date(self, now: float) -> str:
        return datetime.fromtimestamp(now, self._tz).date().isoformat()

    def done_on(self, customer_id: str, local_date: str) -> bool:
        return self._last.get(customer_id) == local_date

    def record(self, customer_id: str, local_date: str) -> None:
        self._last.pop(customer_id, None)
        self._last[customer_id] = local_date
        while len(self._last) > self._limit:
            self._last.popitem(last=False)

    def forget(self, customer_id: str) -> None:
        self._last.pop(customer_id, None)

"""Loyalty check-in: once per customer and local day of the store. Pure.

The first recognised visit of a local day of a customer with marketing consent is a check-in
(``check_in.v1`` for HQ's loyalty system, and a ``loyalty.check_in`` notification with the
reward). The date is the store's local date, so a shopper in at 23:50 and again at 00:10 checks
in twice: those are two days of the loyalty programme. Which customers checked in on which date
is bounded (``MAX_CHECK_INS``, oldest first).
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from zoneinfo import ZoneInfo

from edge_agent.core.const import MAX_CHECK_INS


class CheckIns:
    def __init__(self, timezone: str, limit: int = MAX_CHECK_INS) -> None:
        self._tz = ZoneInfo(timezone)
        self._limit = limit
        self._last: OrderedDict[str, str] = OrderedDict()  # customer id -> local date checked in

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

"""Whether a customer notification may go out now, and if not, why. Pure; time is an argument.

Every rule asks before it notifies a customer: consent for the purpose (``service`` for
click-and-collect, ``marketing`` for shelf suggestions and coupons), quiet hours in the store's
time zone, a cap per visit and per local day, and a minimum gap since the customer's last
notification. A refusal is a reason string the core turns into a ``suppressed.v1`` record, so HQ
can audit why a shopper did or did not hear from us. Staff alerts are operational and pass only
the consent check (they exist because the customer asked for the service).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from edge_agent.core.registry import Customer
from edge_agent.core.settings import GuardSettings


@dataclass(slots=True)
class _Sent:
    last: float = float("-inf")
    per_visit: dict[str, int] | None = None
    day: int = -1
    today: int = 0


_NEVER = _Sent()  # a customer not notified lately: read, never written


class NotificationGuard:
    def __init__(self, settings: GuardSettings, timezone: str) -> None:
        self._tz = ZoneInfo(timezone)
        self._sent: defaultdict[str, _Sent] = defaultdict(_Sent)
        self._today = -1  # the local day the map was last swept
        self.retune(settings)

    def retune(self, settings: GuardSettings) -> None:
        self._settings = settings
        self._quiet = (_hhmm(settings.quiet_hours_start), _hhmm(settings.quiet_hours_end))

    def refusal(
        self, customer: Customer, purpose: str, visit_id: str, now: float, *, staff: bool = False
    ) -> str | None:
        """None if the notification may go, else the reason it may not."""
        consented = customer.consent_service if purpose == "service" else customer.consent_marketing
        if not consented:
            return f"no {purpose} consent"
        if staff:
            return None
        local = datetime.fromtimestamp(now, self._tz)
        if self._in_quiet_hours(local.time()):
            return "quiet hours"
        sent = self._sent.get(customer.customer_id, _NEVER)  # asking keeps no entry
        settings = self._settings
        if sent.per_visit and sent.per_visit.get(visit_id, 0) >= settings.max_per_visit:
            return "visit cap reached"
        if sent.day == local.toordinal() and sent.today >= settings.max_per_day:
            return "daily cap reached"
        if now - sent.last < settings.min_gap_s:
            return "minimum gap"
        return None

    def sent(self, customer_id: str, visit_id: str, now: float) -> None:
        day = datetime.fromtimestamp(now, self._tz).toordinal()
        if day != self._today:
            self._forget_earlier_days(day, now)
        sent = self._sent[customer_id]
        if sent.day != day:
            sent.day, sent.today = day, 0
        sent.today += 1
        sent.last = now
        if sent.per_visit is None:
            sent.per_visit = {}
        sent.per_visit[visit_id] = sent.per_visit.get(visit_id, 0) + 1

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: the minimum gap keeps counting from the last
        notification, re-dated by the step; the daily cap counts on the local day that re-dated
        notification falls on (a step across midnight moves the count to the corrected day)."""
        for sent in self._sent.values():
            if sent.last != float("-inf"):
                sent.last += delta_s
                sent.day = datetime.fromtimestamp(sent.last, self._tz).toordinal()

    def restore(self, customer_id: str, visit_id: str | None, at: float) -> None:
        """A customer notification sent before a restart (oldest first), so the gap, the day's
        cap and an open visit's cap go on counting it. ``visit_id`` None: that visit has ended."""
        self.sent(customer_id, visit_id or "", at)
        sent = self._sent[customer_id]
        if visit_id is None and sent.per_visit:
            sent.per_visit.pop("", None)

    def _forget_earlier_days(self, day: int, now: float) -> None:
        """Once a local day: drop customers whose caps can no longer refuse anything (sent on an
        earlier day, past the minimum gap, no open visit counted), so the map holds the
        customers notified lately, not everyone ever notified."""
        self._today = day
        gap = self._settings.min_gap_s
        stale = [c for c, s in self._sent.items() if s.day < day and now - s.last >= gap and not s.per_visit]
        for customer_id in stale:
            del self._sent[customer_id]

    def visit_ended(self, customer_id: str, visit_id: str) -> None:
        sent = self._sent.get(customer_id)
        if sent is not None and sent.per_visit:
            sent.per_visit.pop(visit_id, None)

    def forget(self, customer_id: str) -> None:
        self._sent.pop(customer_id, None)

    def _in_quiet_hours(self, moment: time) -> bool:
        start, end = self._quiet
        if start == end:
            return False
        if start < end:
            return start <= moment < end
        return moment >= start or moment < end  # across midnight


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))

"""Assistance: a recognised shopper lingering in a department where staff can help. Pure.

A shopper in one of ``assist.zones`` for ``assist.after_s`` or longer (one stay, counted from
when they entered the zone, while they are heard) is named to staff with the zone
(``staff.assist``), once per stay: leaving the zone and coming back is a new stay. The stays
already named are kept only for open visits (``visit_ended`` drops them), so the set follows
the shoppers in the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.core.events import Message
from edge_agent.core.journey.acting import Acts
from edge_agent.core.journey.collection import stay_so_far
from edge_agent.core.presence import OpenVisit, ZoneStay
from edge_agent.core.registry import Customer
from edge_agent.core.settings import AssistSettings


@dataclass(frozen=True, slots=True)
class Lingering:
    visit: OpenVisit
    stay: ZoneStay


class AssistWatch:
    def __init__(self) -> None:
        self._named: dict[str, float] = {}  # visit id -> entry time of the stay staff heard about

    def alerts(
        self, acts: Acts, settings: AssistSettings, present: list[tuple[OpenVisit, Customer]], now: float
    ) -> list[Message]:
        """``staff.assist`` for each shopper who has just lingered long enough."""
        messages: list[Message] = []
        for lingering, customer in self._due(settings, present, now):
            zone = lingering.stay.zone
            fields = {"zone": zone, "minutes": f"{(now - lingering.stay.entered_at) / 60:.0f}"}
            messages.append(
                acts.notify(customer, lingering.visit, "staff.assist", "service", now,
                            settings.notification_ttl_s, {"zone": zone}, fields, staff=True)
            )  # fmt: skip
        return messages

    def _due(
        self, settings: AssistSettings, present: list[tuple[OpenVisit, Customer]], now: float
    ) -> list[tuple[Lingering, Customer]]:
        if not settings.enabled or not settings.zones:
            return []
        found: list[tuple[Lingering, Customer]] = []
        for visit, customer in present:
            if not visit.path:
                continue
            stay = visit.path[-1]
            if stay.zone not in settings.zones or stay_so_far(visit, now) < settings.after_s:
                continue
            if self._named.get(visit.visit_id) == stay.entered_at:
                continue
            self._named[visit.visit_id] = stay.entered_at
            found.append((Lingering(visit, stay), customer))
        return found

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: the stays staff heard about are re-dated as the
        visits' own stays are (``presence``), so a stay already named is not named again."""
        self._named = {visit_id: at + delta_s for visit_id, at in self._named.items()}

    def visit_ended(self, visit_id: str) -> None:
        self._named.pop(visit_id, None)

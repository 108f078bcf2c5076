"""Assistance: a recognised shopper lingering in a department where staff can help. Pure.

A shopper in one of ``assist.zones`` for ``assist.after_s`` or longer (one stay, counted from
when they entered the zone, while they are heard) is named to staff with the zone
(``staff.assist``), once per stay: leaving the zone and coming back is a new stay. The stays
already named are kept only for open visits (``visit_ended`` drops them), so the set follows
the shoppers in the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.core.journey.collection import stay_so_far
from edge_agent.core.presence import OpenVisit, ZoneStay
from edge_agent.core.settings import AssistSettings


@dataclass(frozen=True, slots=True)
class Lingering:
    visit: OpenVisit
    stay: ZoneStay


class AssistWatch:
    def __init__(self) -> None:
        self._named: dict[str, float] = {}  # visit id -> entry time of the stay staff heard about

    def due(self, settings: AssistSettings, visits: Iterable[OpenVisit], now: float) -> list[Lingering]:
        if not settings.enabled or not settings.zones:
            return []
        found: list[Lingering] = []
        for visit in visits:
            if not visit.path:
                continue
            stay = visit.path[-1]
            if stay.zone not in settings.zones or stay_so_far(visit, now) < settings.after_s:
                continue
            if self._named.get(visit.visit_id) == stay.entered_at:
                continue
            self._named[visit.visit_id] = stay.entered_at
            found.append(Lingering(visit, stay))
        return found

    def visit_ended(self, visit_id: str) -> None:
        self._named.pop(visit_id, None)

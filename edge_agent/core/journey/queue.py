"""Queue alert: a watched zone full of people for a while tells staff "open another till",
once per queue. Pure; time is an argument.

The count is everyone heard in the zone (anonymous included), which jitters by a person or two
from one tick to the next. A zone alerts when its count has stayed at ``above`` or more for
``for_s``, and is armed again only once the count falls to ``clear_at`` or fewer: hysteresis,
so a queue hovering at the mark alerts once, not on every tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from edge_agent.core.events import Message
from edge_agent.core.journey.acting import Acts
from edge_agent.core.settings import QueueSettings


@dataclass(slots=True)
class _ZoneState:
    above_since: float | None = None
    alerted: bool = False


@dataclass(frozen=True, slots=True)
class QueueAlert:
    zone: str
    people: int
    since: float


class QueueWatch:
    def __init__(self) -> None:
        self._zones: dict[str, _ZoneState] = {}

    def alerts(
        self, acts: Acts, settings: QueueSettings, occupancy: Mapping[str, int], now: float
    ) -> list[Message]:
        """``staff_alert.v1`` ``staff.queue`` for each zone whose queue has just formed."""
        return [
            acts.staff_alert(
                "staff.queue", alert.zone, now, settings.notification_ttl_s,
                {"zone": alert.zone, "people": str(alert.people)},
                {"people": alert.people, "zone": alert.zone},
            )
            for alert in self.update(settings, occupancy, now)
        ]  # fmt: skip

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: a queue forming keeps the time it has already
        stood, so its alert comes after ``for_s`` of real time, neither early nor an hour late."""
        for state in self._zones.values():
            if state.above_since is not None:
                state.above_since += delta_s

    def update(self, settings: QueueSettings, occupancy: Mapping[str, int], now: float) -> list[QueueAlert]:
        """The zones whose queue has just become one worth an alert."""
        alerts: list[QueueAlert] = []
        for zone in settings.zones:
            state = self._zones.setdefault(zone, _ZoneState())
            people = occupancy.get(zone, 0)
            if people <= settings.clear_at:
                state.above_since, state.alerted = None, False
                continue
            if people < settings.above:
                state.above_since = None  # between the marks: no new alert, none re-armed
                continue
            if state.above_since is None:
                state.above_since = now
            if not state.alerted and now - state.above_since >= settings.for_s:
                state.alerted = True
                alerts.append(QueueAlert(zone, people, state.above_since))
        for zone in [z for z in self._zones if z not in settings.zones]:
            del self._zones[zone]  # a zone no longer watched after a reload
        return alerts

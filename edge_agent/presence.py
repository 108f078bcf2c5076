"""Visits: when a subject arrived, where it was heard, when it left. Pure; time is an argument.

A visit starts with the first sighting at or above the entry threshold (weaker ones are people
passing the shop window) and ends when the subject has not been heard for the absence timeout;
the end time is the last sighting, not the moment we noticed the silence.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Subject:
    """What a sighting is about: a recognised customer or a daily pseudonym."""

    kind: str  # "customer" | "anonymous"
    id: str


@dataclass(slots=True)
class OpenVisit:
    visit_id: str
    subject: Subject
    started_at: float
    last_seen: float
    entry_receiver: str
    receivers: dict[str, int] = field(default_factory=dict)  # receiver -> sightings


@dataclass(frozen=True, slots=True)
class VisitStarted:
    visit: OpenVisit
    ts: float


@dataclass(frozen=True, slots=True)
class VisitEnded:
    visit: OpenVisit
    ts: float


class VisitTracker:
    def __init__(self, entry_rssi_dbm: int, absence_timeout_s: float) -> None:
        self._entry_rssi = entry_rssi_dbm
        self._timeout = absence_timeout_s
        self._open: dict[Subject, OpenVisit] = {}
        # (deadline, subject kind, subject id): one entry per open visit.
        self._deadlines: list[tuple[float, str, str]] = []

    def retune(self, entry_rssi_dbm: int, absence_timeout_s: float) -> None:
        """New thresholds for what comes next; open visits stay open (deadlines re-checked lazily)."""
        self._entry_rssi = entry_rssi_dbm
        self._timeout = absence_timeout_s
        self._deadlines = [(v.last_seen + absence_timeout_s, s.kind, s.id) for s, v in self._open.items()]
        heapq.heapify(self._deadlines)

    @property
    def open_visits(self) -> dict[Subject, OpenVisit]:
        return self._open

    def observe(
        self, subject: Subject, receiver: str, rssi: int, ts: float, new_visit_id: Callable[[float], str]
    ) -> VisitStarted | None:
        visit = self._open.get(subject)
        if visit is not None:
            visit.receivers[receiver] = visit.receivers.get(receiver, 0) + 1
            # Receivers may deliver slightly out of order; the visit never goes back in time.
            visit.last_seen = max(visit.last_seen, ts)
            return None
        if rssi < self._entry_rssi:
            return None
        visit = OpenVisit(new_visit_id(ts), subject, ts, ts, receiver, {receiver: 1})
        self._open[subject] = visit
        heapq.heappush(self._deadlines, (ts + self._timeout, subject.kind, subject.id))
        return VisitStarted(visit, ts)

    def expire(self, now: float) -> list[VisitEnded]:
        """End every visit silent for longer than the timeout at ``now``.

        The heap holds one entry per open visit; an entry whose visit was heard since is pushed
        back with its new deadline, so memory follows open visits, not sighting rate.
        """
        ended: list[VisitEnded] = []
        while self._deadlines and self._deadlines[0][0] < now:
            _, kind, subject_id = heapq.heappop(self._deadlines)
            subject = Subject(kind, subject_id)
            visit = self._open.get(subject)
            if visit is None:
                continue
            deadline = visit.last_seen + self._timeout
            if deadline >= now:
                heapq.heappush(self._deadlines, (deadline, kind, subject_id))
                continue
            del self._open[subject]
            ended.append(VisitEnded(visit, visit.last_seen))
        return ended

    def forget(self, subject: Subject) -> None:
        """Drop a subject's open visit without an end event (erasure)."""
        self._open.pop(subject, None)

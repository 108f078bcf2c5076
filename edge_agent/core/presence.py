"""Visits and where they go: start, zones, dwell, end. Pure; time is an argument.

A visit starts with the first sighting at or above the entry threshold (weaker ones are people
passing the shop window) and ends when the subject has not been heard for the absence timeout;
the end time is the last sighting, not the moment we noticed the silence.

For recognised customers the tracker also follows zones. Every receiver's RSSI for the shopper
is smoothed (``rssi``), corrected by the receiver's measured power at 1 m, and each zone scores
its best receiver. The shopper moves to a better zone only when it leads the current one by
``zone_margin_db`` for ``zone_min_s`` (hysteresis: shadowing of a few dB flips the strongest
receiver several times a minute, people do not), and only through adjacent zones: a leader two
rooms away moves the shopper one step towards it. The move is dated from when the lead began.
Anonymous visitors are counted only, so their sightings cost one dictionary update.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from edge_agent.core.layout import StoreLayout
from edge_agent.core.rssi import Level, distance_m, level_factory
from edge_agent.core.settings import PresenceSettings


class Subject(NamedTuple):
    """What a sighting is about: a recognised customer or a daily pseudonym.

    A named tuple rather than a dataclass: it is hashed and compared several times per sighting,
    and a tuple does that in C (the core's throughput rose by about a fifth).
    """

    kind: str  # "customer" | "anonymous"
    id: str


@dataclass(slots=True)
class ZoneStay:
    zone: str
    entered_at: float
    exited_at: float | None = None
    dwell_reported: bool = False

    def duration(self, until: float) -> float:
        end = self.exited_at if self.exited_at is not None else until
        return max(0.0, end - self.entered_at)


@dataclass(slots=True)
class OpenVisit:
    visit_id: str
    subject: Subject
    started_at: float
    last_seen: float
    entry_receiver: str
    receivers: dict[str, int] = field(default_factory=dict)  # receiver -> sightings
    path: list[ZoneStay] = field(default_factory=list)
    pending_zone: str | None = None
    pending_since: float = 0.0
    levels: dict[str, Level] = field(default_factory=dict)  # smoothed RSSI per receiver
    evaluated_at: float = float("-inf")  # when the zones were last weighed
    # Anonymous subjects are not located; the receiver that heard them loudest lately is their
    # zone for per-zone occupancy (``LOUDEST_HOLD_S``). Not kept across a restart.
    loudest_receiver: str = ""
    loudest_rssi: int = -1000
    loudest_at: float = float("-inf")

    @property
    def zone(self) -> str | None:
        return self.path[-1].zone if self.path else None

    def to_record(self) -> dict[str, Any]:
        """What survives a restart: everything but the filters, which refill in seconds."""
        return {
            "visit_id": self.visit_id, "kind": self.subject.kind, "subject": self.subject.id,
            "started_at": self.started_at, "last_seen": self.last_seen,
            "entry_receiver": self.entry_receiver, "receivers": self.receivers,
            "path": [[s.zone, s.entered_at, s.exited_at, s.dwell_reported] for s in self.path],
        }  # fmt: skip

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OpenVisit:
        return cls(
            visit_id=record["visit_id"],
            subject=Subject(record["kind"], record["subject"]),
            started_at=float(record["started_at"]),
            last_seen=float(record["last_seen"]),
            entry_receiver=record["entry_receiver"],
            receivers={str(k): int(v) for k, v in record["receivers"].items()},
            path=[
                ZoneStay(z, float(a), None if b is None else float(b), bool(d))
                for z, a, b, d in record["path"]
            ],
        )


# Phones advertise a few times a second at most; zones are weighed at most this often per visit.
EVALUATION_INTERVAL_S = 0.5
# An anonymous subject's loudest receiver holds for this long unless a louder one hears it: one
# advertisement reaches every receiver within a second, and two seconds spans a couple of
# advertisements, so the weaker receivers' reports of the same advertisement never win.
LOUDEST_HOLD_S = 2.0


@dataclass(frozen=True, slots=True)
class VisitStarted:
    visit: OpenVisit
    ts: float


@dataclass(frozen=True, slots=True)
class ZoneEntered:
    visit: OpenVisit
    stay: ZoneStay
    previous: str | None
    distance_m: float | None
    ts: float


@dataclass(frozen=True, slots=True)
class DwellReached:
    visit: OpenVisit
    stay: ZoneStay
    ts: float


@dataclass(frozen=True, slots=True)
class VisitEnded:
    visit: OpenVisit
    ts: float


PresenceEvent = VisitStarted | ZoneEntered | DwellReached | VisitEnded


class VisitTracker:
    def __init__(self, settings: PresenceSettings, layout: StoreLayout) -> None:
        self._open: dict[Subject, OpenVisit] = {}
        # (deadline, subject kind, subject id): one entry per open visit.
        self._deadlines: list[tuple[float, str, str]] = []
        self._located: set[Subject] = set()
        self.retune(settings, layout)

    def retune(self, settings: PresenceSettings, layout: StoreLayout) -> None:
        """New thresholds and layout for what comes next; open visits stay open."""
        self._settings = settings
        self._layout = layout
        # Each receiver's 1 m power: the configured one until calibration estimates it.
        self._power: dict[str, float] = {r: float(p) for r, p in layout.measured_power.items()}
        self._new_level = level_factory(settings)
        self._deadlines = [
            (v.last_seen + settings.absence_timeout_s, s.kind, s.id) for s, v in self._open.items()
        ]
        heapq.heapify(self._deadlines)
        for visit in self._open.values():
            visit.levels.clear()  # a different filter type must not inherit another's state

    def calibrate(self, power: Mapping[str, float]) -> None:
        """Receivers' 1 m power as estimated (``core.calibration``), for every zone choice from now."""
        self._power = {r: float(power.get(r, p)) for r, p in self._layout.measured_power.items()}

    @property
    def measured_power(self) -> Mapping[str, float]:
        """The receivers' 1 m power zone choice uses now."""
        return self._power

    @property
    def open_visits(self) -> dict[Subject, OpenVisit]:
        return self._open

    def restore(self, visit: OpenVisit) -> None:
        """Reopen a visit kept across a restart; it ends normally if it has gone silent."""
        self._open[visit.subject] = visit
        heapq.heappush(
            self._deadlines,
            (visit.last_seen + self._settings.absence_timeout_s, visit.subject.kind, visit.subject.id),
        )
        if visit.path:
            self._located.add(visit.subject)

    def observe(
        self,
        subject: Subject,
        receiver: str,
        rssi: int,
        ts: float,
        new_visit_id: Callable[[float], str],
        *,
        locate: bool = False,
    ) -> list[PresenceEvent]:
        visit = self._open.get(subject)
        events: list[PresenceEvent] = []
        if visit is None:
            if rssi < self._settings.entry_rssi_dbm:
                return events
            visit = OpenVisit(new_visit_id(ts), subject, ts, ts, receiver, {receiver: 0})
            self._open[subject] = visit
            heapq.heappush(self._deadlines, (ts + self._settings.absence_timeout_s, subject.kind, subject.id))
            events.append(VisitStarted(visit, ts))
        visit.receivers[receiver] = visit.receivers.get(receiver, 0) + 1
        # Receivers may deliver slightly out of order; the visit never goes back in time.
        visit.last_seen = max(visit.last_seen, ts)
        if locate:
            self._located.add(subject)
            self._locate(visit, receiver, rssi, ts, events)
            self._check_dwell(visit, ts, events)
        elif (
            rssi >= visit.loudest_rssi
            or receiver == visit.loudest_receiver
            or ts - visit.loudest_at > LOUDEST_HOLD_S
        ):
            visit.loudest_receiver, visit.loudest_rssi, visit.loudest_at = receiver, rssi, ts
        return events

    def _locate(
        self, visit: OpenVisit, receiver: str, rssi: int, ts: float, events: list[PresenceEvent]
    ) -> None:
        layout, settings = self._layout, self._settings
        if receiver not in layout.zone_of_receiver:
            return  # a receiver the configuration does not place tells nothing about zones
        level = visit.levels.get(receiver)
        if level is None:
            visit.levels[receiver] = self._new_level(rssi, ts)
        else:
            level.update(rssi, ts)
        # One advertisement reaches every receiver in range at the same instant: update each
        # receiver's level as its sighting comes, but weigh the zones once per advertisement,
        # when the next one begins (or a new visit has no zone yet).
        if visit.path and ts - visit.evaluated_at < EVALUATION_INTERVAL_S:
            return
        visit.evaluated_at = ts
        strengths: dict[str, float] = {}
        oldest = ts - settings.stale_s
        power = self._power
        for rid, level in visit.levels.items():
            if level.last_ts < oldest:
                continue
            strength = level.value - power[rid]  # dB above "1 m away"
            zone = layout.zone_of_receiver[rid]
            if strength > strengths.get(zone, -1e9):
                strengths[zone] = strength
        if not strengths:
            return
        best = max(strengths, key=strengths.__getitem__)
        current = visit.zone
        if current is None:
            self._enter(visit, best, ts, ts, strengths[best], events)
            return
        if best == current or strengths[best] < strengths.get(current, -1e9) + settings.zone_margin_db:
            visit.pending_zone = None
            return
        if visit.pending_zone != best:
            visit.pending_zone, visit.pending_since = best, ts
        if ts - visit.pending_since < settings.zone_min_s:
            return
        since = visit.pending_since
        step = best if layout.adjacent(current, best) else layout.step_towards(current, best)
        self._enter(visit, step, since, ts, strengths.get(step), events)
        # Still on the way to ``best``: the next step needs its own lead time from here.
        visit.pending_zone, visit.pending_since = (None, 0.0) if step == best else (best, ts)

    def _enter(
        self,
        visit: OpenVisit,
        zone: str,
        since: float,
        ts: float,
        strength: float | None,
        events: list[PresenceEvent],
    ) -> None:
        previous = visit.path[-1] if visit.path else None
        entered_at = since if previous is None else max(since, previous.entered_at)
        if previous is not None:
            previous.exited_at = entered_at
        stay = ZoneStay(zone, entered_at)
        visit.path.append(stay)
        distance = None if strength is None else distance_m(strength, 0.0, self._settings.path_loss_exponent)
        events.append(ZoneEntered(visit, stay, None if previous is None else previous.zone, distance, ts))

    def _check_dwell(self, visit: OpenVisit, now: float, events: list[PresenceEvent]) -> None:
        if not visit.path:
            return
        stay = visit.path[-1]
        if not stay.dwell_reported and now - stay.entered_at >= self._layout.dwell_s.get(stay.zone, 1e18):
            stay.dwell_reported = True
            events.append(DwellReached(visit, stay, now))

    def expire(self, now: float) -> list[PresenceEvent]:
        """Dwell reached by time alone, then every visit silent for longer than the timeout.

        The heap holds one entry per open visit; an entry whose visit was heard since is pushed
        back with its new deadline, so memory follows open visits, not sighting rate.
        """
        events: list[PresenceEvent] = []
        for subject in self._located:
            visit = self._open.get(subject)
            if visit is not None:
                # Dwell counts while the shopper is heard; silence is not dwelling.
                self._check_dwell(visit, min(now, visit.last_seen + self._settings.stale_s), events)
        timeout = self._settings.absence_timeout_s
        while self._deadlines and self._deadlines[0][0] < now:
            _, kind, subject_id = heapq.heappop(self._deadlines)
            subject = Subject(kind, subject_id)
            visit = self._open.get(subject)
            if visit is None:
                continue
            deadline = visit.last_seen + timeout
            if deadline >= now:
                heapq.heappush(self._deadlines, (deadline, kind, subject_id))
                continue
            del self._open[subject]
            self._located.discard(subject)
            if visit.path:
                visit.path[-1].exited_at = max(visit.path[-1].entered_at, visit.last_seen)
            events.append(VisitEnded(visit, visit.last_seen))
        return events

    def shift(self, delta_s: float) -> None:
        """Re-date every open visit by a wall-clock step the agent followed (``core.wallclock``).

        Silence is measured on agent time, so a visit neither ends nor reopens because the clock
        stepped: its times move with the clock, its durations stay. The RSSI filters restart
        (they refill in seconds, as at a retune)."""
        for visit in self._open.values():
            visit.started_at += delta_s
            visit.last_seen += delta_s
            visit.pending_since += delta_s
            visit.loudest_at += delta_s  # an anonymous shopper's zone for the queue's count
            visit.evaluated_at = float("-inf")
            visit.levels.clear()
            for stay in visit.path:
                stay.entered_at += delta_s
                if stay.exited_at is not None:
                    stay.exited_at += delta_s
        self._deadlines = [(d + delta_s, kind, sid) for d, kind, sid in self._deadlines]
        heapq.heapify(self._deadlines)

    def forget(self, subject: Subject) -> None:
        """Drop a subject's open visit without an end event (erasure, consent withdrawn)."""
        self._open.pop(subject, None)
        self._located.discard(subject)

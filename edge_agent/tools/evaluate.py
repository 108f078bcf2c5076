"""How good are the agent's visits and zones? Score a run of the core against ground truth.

``edge-agent evaluate`` replays a simulated trace through the same pure core the daemon runs
(registry from the truth file, ticks every ``scheduler.tick_interval_s`` of simulated time) and
compares what HQ would receive with what really happened:

- visit precision and recall over recognisable customers (consenting app users), a predicted
  visit matching a true one of the same customer that it overlaps, one to one;
- zone-time accuracy: over the true visit's seconds inside a zone, the fraction in which the
  matched predicted visit's journey places the shopper in that zone;
- entry-time error: predicted visit start minus true arrival, median and 95th percentile;
- footfall: entries counted against shoppers who really came (address rotation caveat).
Pure: sightings and truth in, figures out.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.core.calibration import REFERENCE_POWER_DBM
from edge_agent.core.events import FootfallMessage, Message, VisitMessage
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.registry import Customer
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.store import StoreCore
from edge_agent.tools.simulate import TrueVisit, zone_at


@dataclass(frozen=True, slots=True)
class PredictedVisit:
    customer_id: str
    start: float
    end: float
    zones: list[tuple[str, float, float]]

    def zone_at(self, ts: float) -> str | None:
        return zone_at(self.zones, ts)


@dataclass(frozen=True, slots=True)
class Scores:
    true_visits: int
    predicted_visits: int
    matched: int
    precision: float
    recall: float
    zone_accuracy: float
    zone_seconds: int
    entry_error_median_s: float
    entry_error_p95_s: float
    shoppers: int
    footfall_entries: int
    sightings: int

    def rows(self) -> list[tuple[str, str]]:
        return [
            ("sightings", f"{self.sightings:,}"),
            ("recognisable visits (truth)", f"{self.true_visits}"),
            ("customer visits reported", f"{self.predicted_visits}"),
            ("visit precision", f"{self.precision:.3f}"),
            ("visit recall", f"{self.recall:.3f}"),
            ("zone-time accuracy", f"{self.zone_accuracy:.3f} over {self.zone_seconds:,} s"),
            ("entry-time error median", f"{self.entry_error_median_s:.1f} s"),
            ("entry-time error p95", f"{self.entry_error_p95_s:.1f} s"),
            ("footfall entries / true shoppers", f"{self.footfall_entries} / {self.shoppers}"),
        ]


def run_core(
    config: AgentConfig, customers: Iterable[Customer], sightings: Iterable[Sighting]
) -> tuple[list[Message], int]:
    """Drive the pure core over ``sightings`` with simulated ticks until every visit has closed."""
    messages, count, _ = drive_core(config, customers, sightings)
    return messages, count


def drive_core(
    config: AgentConfig, customers: Iterable[Customer], sightings: Iterable[Sighting]
) -> tuple[list[Message], int, StoreCore]:
    """``run_core``, handing back the core too (its receivers' calibration at the end of the run)."""
    core = StoreCore(config, EventIdFactory.seeded("evaluate"), fastest_cipher())
    core.load(customers, [], None)
    tick_s = config.scheduler.tick_interval_s
    fed = feed_with_ticks(core, sightings, tick_s)
    messages = fed.messages
    next_tick = fed.next_tick
    end = fed.last + config.presence.absence_timeout_s + config.footfall.interval_s + 2 * tick_s
    while next_tick is not None and next_tick <= end:
        messages += core.tick(next_tick)
        next_tick += tick_s
    return messages, fed.count, core


@dataclass(slots=True)
class FedTrace:
    """What ``feed_with_ticks`` leaves: the messages, how many sightings, the last one's time,
    and when the next tick is due (None: no sighting at all)."""

    messages: list[Message]
    count: int
    last: float
    next_tick: float | None


def feed_with_ticks(core: StoreCore, sightings: Iterable[Sighting], tick_s: float) -> FedTrace:
    """``sightings`` through ``core`` with a tick every ``tick_s`` of their own time, as the
    daemon's scheduler would tick between them; how the run ends is the caller's."""
    messages: list[Message] = []
    next_tick: float | None = None
    count = 0
    last = 0.0
    for sighting in sightings:
        count += 1
        last = sighting.ts
        if next_tick is None:
            next_tick = sighting.ts + tick_s
        while sighting.ts >= next_tick:
            messages += core.tick(next_tick)
            next_tick += tick_s
        messages += core.observe(sighting)
    return FedTrace(messages, count, last, next_tick)


@dataclass(frozen=True, slots=True)
class CalibrationError:
    """One receiver's estimate at the end of the run against its true offset (dB vs -59 dBm)."""

    receiver: str
    true_offset_db: float
    configured_offset_db: float
    estimated_offset_db: float | None

    @property
    def error_db(self) -> float | None:
        return None if self.estimated_offset_db is None else self.estimated_offset_db - self.true_offset_db


def calibration_errors(
    core: StoreCore, truth_config: AgentConfig, drift: Iterable[tuple[str, float]] = ()
) -> list[CalibrationError]:
    """Each receiver's estimate against ``truth_config``'s power (plus ``drift``, (receiver, dB),
    the shifts the simulator applied before the run ended)."""
    true = {r.id: r.measured_power_dbm - REFERENCE_POWER_DBM for r in truth_config.receivers}
    for receiver, db in drift:
        if receiver in true:
            true[receiver] += db
    return [
        CalibrationError(e.receiver, true.get(e.receiver, 0.0), e.configured_offset_db, e.offset_db)
        for e in core.calibration.estimates()
        if e.receiver in true
    ]


def predicted_visits(messages: Iterable[Message]) -> list[PredictedVisit]:
    visits = []
    for message in messages:
        if isinstance(message, VisitMessage) and message.phase == "ended":
            assert message.ended_at is not None
            zones = [
                (leg.zone, leg.entered_at.timestamp(), leg.exited_at.timestamp()) for leg in message.path
            ]
            visits.append(
                PredictedVisit(
                    message.customer_id, message.started_at.timestamp(), message.ended_at.timestamp(), zones
                )
            )
    return visits


def score(truth: list[TrueVisit], messages: list[Message], sightings: int) -> Scores:
    recognisable = [v for v in truth if v.customer_id is not None and v.consenting]
    predicted = predicted_visits(messages)
    by_customer: dict[str, list[PredictedVisit]] = {}
    for visit in predicted:
        by_customer.setdefault(visit.customer_id, []).append(visit)
    matches: list[tuple[TrueVisit, PredictedVisit]] = []
    for true in recognisable:
        candidates = by_customer.get(true.customer_id or "", [])
        overlapping = [p for p in candidates if p.start < true.end and p.end > true.start]
        if overlapping:
            best = max(overlapping, key=lambda p: min(p.end, true.end) - max(p.start, true.start))
            candidates.remove(best)
            matches.append((true, best))
    correct = total = 0
    for true, guess in matches:
        for zone, entered, left in true.zones:
            ts = entered + 0.5
            while ts < left:
                total += 1
                correct += guess.zone_at(ts) == zone
                ts += 1.0
    errors = sorted(abs(guess.start - true.start) for true, guess in matches)
    entries = sum(m.entries for m in messages if isinstance(m, FootfallMessage))
    return Scores(
        true_visits=len(recognisable),
        predicted_visits=len(predicted),
        matched=len(matches),
        precision=len(matches) / len(predicted) if predicted else 1.0,
        recall=len(matches) / len(recognisable) if recognisable else 1.0,
        zone_accuracy=correct / total if total else 0.0,
        zone_seconds=total,
        entry_error_median_s=statistics.median(errors) if errors else 0.0,
        entry_error_p95_s=errors[min(len(errors) - 1, int(0.95 * len(errors)))] if errors else 0.0,
        shoppers=len(truth),
        footfall_entries=entries,
        sightings=sightings,
    )

"""The store's pure core: sightings and downlinks in, messages out, time as an argument.

No sockets, files, threads or wall clock here. Production and replay drive the same object;
only where sightings come from and what ``now`` is differ, which is why a store day replays
in seconds and deterministically.
"""

from __future__ import annotations

import dataclasses
import functools
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from datetime import time as dt_time
from typing import Any

from edge_agent.core.beacons import BeaconFleet
from edge_agent.core.beaconsightings import BeaconSightings
from edge_agent.core.calibration import Calibrator, ReceiverEvent
from edge_agent.core.cipher import REFERENCE, BlockCipher
from edge_agent.core.const import QUEUE_HEARD_S, TOKEN_SLICE_SLOTS
from edge_agent.core.downlinks import CustomersDownlink, Downlink, Handlers
from edge_agent.core.events import (
    BeaconCalibration,
    CalibrationStatus,
    DwellMessage,
    Envelopes,
    Message,
    ReceiverCalibration,
    ReceiverMessage,
    VisitMessage,
    ZoneInterval,
    ZoneMessage,
    utc,
)
from edge_agent.core.footfall import Footfall
from edge_agent.core.frames import (
    AltBeacon,
    EddystoneEid,
    EddystoneEncryptedTlm,
    EddystoneTlm,
    EddystoneUid,
    Frame,
    IBeacon,
    decode_sighting,
)
from edge_agent.core.identity import AnonymousHasher, TokenResolver
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.durable import StateChange
from edge_agent.core.journey.rules import JourneyRules, Order, VisitOf
from edge_agent.core.layout import StoreLayout
from edge_agent.core.presence import (
    OpenVisit,
    PresenceEvent,
    Subject,
    VisitEnded,
    VisitStarted,
    VisitTracker,
    ZoneEntered,
)
from edge_agent.core.registry import Customer, CustomerPage, Registry
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.tokenclock import TokenClock

# What the store core applies itself (AppliedBy.REGISTRY); the journey rules apply the rest.
REGISTRY_KINDS: Handlers[StoreCore, [], None] = Handlers("customer registry")


class StoreCore:
    def __init__(
        self,
        config: AgentConfig,
        ids: EventIdFactory,
        cipher: BlockCipher = REFERENCE,
        *,
        tables_in_slices: bool = False,
    ) -> None:
        """``tables_in_slices``: token windows are built by ``precompute`` between sightings
        (the daemon), not in the sighting or tick that first needs them (replay, tools)."""
        self._store_id = config.store.id
        self._tz = zoneinfo.ZoneInfo(config.store.timezone)
        self._ids = ids
        self._envelope = Envelopes(self._store_id, ids)
        self._fleet = BeaconFleet(config.beacons, config.beacon_health, self._store_id, ids)
        self._beacon_sightings = BeaconSightings(config.beacons, config.identity)
        self._identity = config.identity
        self._clock_settings = config.clock
        self._resolver = TokenResolver(
            config.identity.rotation_exponent, config.identity.skew_windows, cipher=cipher,
            sliced=tables_in_slices,
        )  # fmt: skip
        self.token_clock = _token_clock(config)
        self._hasher = AnonymousHasher(ids.random)
        self._day_span: tuple[float, float, int] = (0.0, 0.0, 0)
        self._layout = StoreLayout.from_config(config)
        self._tracker = VisitTracker(config.presence, self._layout)
        self._calibration = Calibrator(config)
        self._occupancy_window_s = config.footfall.occupancy_window_s
        self._journey = JourneyRules(config.rules, self._store_id, config.store.timezone, ids)
        self.registry_version: int | None = None
        self.counters: Counter[str] = Counter()
        # Customers whose kept open visit changed shape (started, moved, ended, erased): the
        # pipeline rewrites just their rows with the messages that announce it.
        self.changed_visits: set[str] = set()
        self._footfall = Footfall(
            config.footfall.interval_s, self._receivers_in(config.store.entrance_zone), self._envelope,
            self.counters,
        )  # fmt: skip

    def reconfigure(self, config: AgentConfig) -> None:
        """Apply a reloaded configuration without losing open visits, registry or orders.

        The caller keeps ``store`` unchanged (ids and time zone are part of every message).
        """
        self._layout = StoreLayout.from_config(config)
        self._tracker.retune(config.presence, self._layout)
        self._calibration.reconfigure(config)
        self._tracker.calibrate(self._calibration.power())
        self._occupancy_window_s = config.footfall.occupancy_window_s
        self._journey.retune(config.rules)
        self._fleet.retune(config.beacons, config.beacon_health)
        self._beacon_sightings.retune(config.beacons, config.identity)
        self._footfall.retune(config.footfall.interval_s, self._receivers_in(config.store.entrance_zone))
        if config.identity != self._identity or config.clock != self._clock_settings:
            searching = self.token_clock.searching
            self.token_clock = _token_clock(config)
            self.token_clock.searching = searching
            self._clock_settings = config.clock
        if config.identity != self._identity:
            # New token parameters invalidate every precomputed window: rebuild, but only then,
            # since a rebuild recomputes every registered customer's tokens.
            self._identity = identity = config.identity
            self._resolver = TokenResolver(
                identity.rotation_exponent, identity.skew_windows, self.customers, self._resolver.cipher,
                sliced=self._resolver.sliced,
            )  # fmt: skip

    # ------------------------------------------------------------------ state from HQ

    @property
    def customers(self) -> Registry:
        return self._resolver.registry

    @property
    def missing_beacons(self) -> list[str]:
        return self._fleet.missing()

    @property
    def open_visits(self) -> int:
        return len(self._tracker.open_visits)

    # ------------------------------------------------------------------ calibration

    @property
    def calibration(self) -> Calibrator:
        return self._calibration

    @property
    def zone_power(self) -> Mapping[str, float]:
        """Each receiver's 1 m power as zone choice uses it now (calibrated where estimated)."""
        return self._tracker.measured_power

    def calibration_status(self) -> CalibrationStatus | None:
        """Receivers' live estimates and the beacons' checks, for status.v1 (None when off)."""
        calibration = self._calibration
        if not calibration.active:
            return None
        return CalibrationStatus(
            receivers=[ReceiverCalibration(**dataclasses.asdict(e)) for e in calibration.estimates()],
            beacons=[BeaconCalibration(**dataclasses.asdict(b)) for b in calibration.beacon_states()],
        )

    def restore_calibration(self, records: Iterable[tuple[str, float, int]]) -> None:
        """Estimates kept across a restart apply to zone choice at once."""
        self._calibration.restore(records)
        self._tracker.calibrate(self._calibration.power())

    def occupancy(self, now: float) -> int:
        """People in the store now: subjects heard in the last ``footfall.occupancy_window_s``.

        Counting open visits instead would count a phone twice for the whole absence timeout
        after it rotates its address; a short window bounds that double count to seconds.
        """
        since = now - self._occupancy_window_s
        return sum(1 for visit in self._tracker.open_visits.values() if visit.last_seen >= since)

    def zone_occupancy(self, now: float, window_s: float | None = None) -> dict[str, int]:
        """People in each zone now, heard in the last ``window_s`` (default: as ``occupancy``
        counts): a recognised shopper in their tracked zone, anyone else in the zone of the
        receiver hearing them loudest (the cheap estimate presence keeps for anonymous
        subjects). Counts only, no identity."""
        since = now - (self._occupancy_window_s if window_s is None else window_s)
        zone_of = self._layout.zone_of_receiver
        counts: Counter[str] = Counter()
        for visit in self._tracker.open_visits.values():
            if visit.last_seen < since:
                continue
            zone = visit.zone or zone_of.get(visit.loudest_receiver)
            if zone is not None:
                counts[zone] += 1
        return dict(sorted(counts.items()))

    def _present_customers(self) -> list[tuple[OpenVisit, Customer]]:
        found = []
        for subject, visit in self._tracker.open_visits.items():
            if subject.kind == "customer" and (customer := self.customers.get(subject.id)) is not None:
                found.append((visit, customer))
        return found

    def _receivers_in(self, zone: str | None) -> frozenset[str]:
        if zone is None:
            return frozenset()
        return frozenset(r for r, z in self._layout.zone_of_receiver.items() if z == zone)

    def open_visit_records(self, customer_ids: Iterable[str] | None = None) -> list[dict[str, object]]:
        """Recognised customers' open visits (all, or those of ``customer_ids``), to keep across
        a restart.

        Anonymous ones are not kept: their pseudonyms' salt lives only in memory, so after a
        restart nobody could be matched to them anyway.
        """
        visits = self._tracker.open_visits
        if customer_ids is not None:
            found = (visits.get(Subject("customer", c)) for c in customer_ids)
            return [v.to_record() for v in found if v is not None]
        return [v.to_record() for s, v in visits.items() if s.kind == "customer"]

    def restore_visits(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            visit = OpenVisit.from_record(record)
            if visit.subject.kind == "customer" and visit.subject.id in self.customers:
                self._tracker.restore(visit)

    def restore_rule_state(self, rows: Iterable[StateChange]) -> None:
        """The journey rules' promises kept at the last stop; call after ``restore_visits``
        (an outcome waits on only if its visit was restored)."""
        self._journey.restore_state(rows, self._open_visit_ids())

    def restore_sent(self, sent: Iterable[tuple[str, str | None, float]]) -> None:
        """Customer notifications sent before a restart, for the guards; after ``restore_visits``."""
        self._journey.restore_sent(sent, self._open_visit_ids())

    def _open_visit_ids(self) -> set[str]:
        return {v.visit_id for v in self._tracker.open_visits.values()}

    @property
    def orders(self) -> dict[str, Order]:
        return self._journey.orders

    @property
    def journey(self) -> JourneyRules:
        return self._journey

    def load(
        self,
        customers: Iterable[Customer],
        orders: Iterable[Order],
        version: int | None,
        downlinks: Iterable[Downlink] = (),
    ) -> None:
        """Restore what the state store kept across a restart (``downlinks``: the logged kinds,
        Persistence.LOG, replayed in the order they were applied)."""
        self.load_registry(
            [CustomerPage.of_rows((c.customer_id, c.identity_key, c.consent_service, c.consent_marketing)
                                  for c in customers)]
        )  # fmt: skip
        for order in orders:
            self._journey.orders[order.order_id] = order
        for downlink in downlinks:
            self._dispatch(downlink, 0.0, _nobody_in_the_store)
        self.registry_version = version

    def load_registry(self, pages: Iterable[CustomerPage]) -> None:
        """Add the customers the state store kept, in bulk (``load`` takes ``Customer``s the same
        way): at start no token window exists yet, so a million customers only fill the
        registry's buffers, and those without consent are dropped from visits and rules as
        ``_set_customer`` drops them."""
        for customer_id in self._resolver.load_pages(pages):
            self._forget_visit_and_journey(customer_id)
            self.changed_visits.add(customer_id)

    def apply(self, downlink: Downlink, now: float) -> list[Message]:
        """Take a validated downlink in; returns the messages it causes (purchases, collections)."""
        return self._dispatch(downlink, now, self._open_visit_of)

    def _dispatch(self, downlink: Downlink, now: float, visit_of: VisitOf) -> list[Message]:
        """The customer registry's kinds (AppliedBy.REGISTRY) here, the others by the journey rules."""
        if type(downlink) in REGISTRY_KINDS:
            REGISTRY_KINDS.apply(self, downlink)
            return []
        return self._journey.apply(downlink, now, visit_of)

    def _open_visit_of(self, customer_id: str) -> OpenVisit | None:
        return self._tracker.open_visits.get(Subject("customer", customer_id))

    @REGISTRY_KINDS.handles(CustomersDownlink)
    def _apply_customers(self, downlink: CustomersDownlink) -> None:
        if downlink.full:
            for customer_id in self.customers:
                self._tracker.forget(Subject("customer", customer_id))
                self.changed_visits.add(customer_id)
            self._resolver.clear()
        for customer_id in downlink.delete:
            self._remove_customer(customer_id)
        for record in downlink.upsert:
            self._set_customer(
                Customer(
                    record.customer_id, record.identity_key, record.consent.service, record.consent.marketing
                )
            )
        if downlink.version is not None:
            self.registry_version = downlink.version

    def _set_customer(self, customer: Customer) -> None:
        self._resolver.put(customer)
        if not customer.resolvable:
            # Consent withdrawn: unrecognisable from now on, and the open visit is dropped.
            self._forget_visit_and_journey(customer.customer_id)
            self.changed_visits.add(customer.customer_id)

    def erase(self, customer_id: str) -> bool:
        """Forget a customer everywhere in memory; True if they had an open visit."""
        had_visit = Subject("customer", customer_id) in self._tracker.open_visits
        self._remove_customer(customer_id)
        self.changed_visits.discard(customer_id)  # the state store deletes the row itself
        return had_visit

    def _remove_customer(self, customer_id: str) -> None:
        self._resolver.remove(customer_id)
        self._forget_visit_and_journey(customer_id)
        self.changed_visits.add(customer_id)

    def _forget_visit_and_journey(self, customer_id: str) -> None:
        """Drop the open visit without ending it, and what the rules keep under its id (receipts,
        suggested items, reasons given), which no ``visit_ended`` will now clear."""
        visit = self._open_visit_of(customer_id)
        self._tracker.forget(Subject("customer", customer_id))
        self._journey.forget_customer(customer_id, None if visit is None else visit.visit_id)

    # ------------------------------------------------------------------ radio

    def observe(self, sighting: Sighting) -> list[Message]:
        self.counters["sightings"] += 1
        now = sighting.ts
        self._footfall.start(now)
        frames = decode_sighting(sighting)
        beacon_messages = self._fleet_observe(sighting, frames)
        subject = self._subject(sighting, frames, now)
        if subject is None:
            return beacon_messages
        recognised = subject.kind == "customer"
        events = self._tracker.observe(
            subject, sighting.receiver, sighting.rssi, now, self._ids.new, locate=recognised
        )
        if not recognised and self._footfall.settling:
            self._footfall.heard(subject, sighting.rssi, sighting.receiver)
        if not events:
            return beacon_messages
        messages = beacon_messages
        for event in events:
            if isinstance(event, VisitStarted):
                self._footfall.arrived(subject, sighting.rssi, sighting.receiver, now, recognised)
            messages.extend(self._presence_messages(event, now))
        return messages

    def _presence_messages(self, event: PresenceEvent, now: float) -> list[Message]:
        """Wire messages for a presence event; anonymous visitors only move the counters."""
        visit = event.visit
        recognised = visit.subject.kind == "customer"
        if recognised:
            self.changed_visits.add(visit.subject.id)
        if isinstance(event, VisitStarted):
            if not recognised:
                return []
            started = VisitMessage(
                **self._envelope.at(now),
                visit_id=visit.visit_id, customer_id=visit.subject.id, phase="started",
                started_at=utc(visit.started_at), entry_receiver=visit.entry_receiver,
                receivers=[visit.entry_receiver],
            )  # fmt: skip
            customer = self.customers.get(visit.subject.id)
            assert customer is not None  # resolved a moment ago
            return [started, *self._journey.visit_started(visit, customer, now)]
        if isinstance(event, VisitEnded):
            self._footfall.left()
            if not recognised:
                return []
            ended = self._visit_ended(event, now)
            return [ended, *self._journey.visit_ended(visit, self.customers.get(visit.subject.id), now)]
        if not recognised:
            return []
        if isinstance(event, ZoneEntered):
            zone = ZoneMessage(
                **self._envelope.at(now),
                visit_id=visit.visit_id, customer_id=visit.subject.id, zone=event.stay.zone,
                from_zone=event.previous, entered_at=utc(event.stay.entered_at),
                distance_m=None if event.distance_m is None else round(event.distance_m, 2),
            )  # fmt: skip
            customer = self.customers.get(visit.subject.id)
            if customer is None:
                return [zone]
            return [zone, *self._journey.zone_entered(visit, customer, event.stay.zone, now)]
        return [
            DwellMessage(
                **self._envelope.at(now),
                visit_id=visit.visit_id, customer_id=visit.subject.id, zone=event.stay.zone,
                entered_at=utc(event.stay.entered_at), dwell_s=round(event.ts - event.stay.entered_at, 3),
            )
        ]  # fmt: skip

    def _fleet_observe(self, sighting: Sighting, frames: list[Frame]) -> list[Message]:
        """Beacon health from the frames, and which addresses are beacons' (see ``_subject``)."""
        messages: list[Message] = []
        address, ts = sighting.address, sighting.ts
        beacons = self._beacon_sightings
        for frame in frames:
            if beacons.is_beacon_frame(frame, self._fleet):
                beacons.remember(address, ts)
            if isinstance(frame, IBeacon | EddystoneUid | AltBeacon):
                identifier = frame.identifier  # a property that formats a string: once
                if identifier not in self._fleet:
                    continue
                messages += self._fleet.seen(identifier, address, sighting.receiver, ts)
                if self._calibration.active and not self._calibration.heard(
                    identifier, sighting.receiver, sighting.rssi, ts, frame
                ):
                    self.counters["calibration_rejected"] += 1
            elif isinstance(frame, EddystoneTlm):
                messages += self._fleet.telemetry(address, frame, ts)
            elif isinstance(frame, EddystoneEncryptedTlm):
                decrypted = beacons.telemetry(frame, ts)
                if decrypted is not None and decrypted[0] in self._fleet:
                    messages += self._fleet.seen(decrypted[0], address, sighting.receiver, ts)
                    messages += self._fleet.telemetry(address, decrypted[1], ts)
            elif isinstance(frame, EddystoneEid):
                beacon_id = beacons.beacon_of_token(frame.eid, ts)
                if beacon_id is not None and beacon_id in self._fleet:
                    beacons.remember(address, ts)
                    messages += self._fleet.seen(beacon_id, address, sighting.receiver, ts)
        return messages

    def _subject(self, sighting: Sighting, frames: list[Frame], now: float) -> Subject | None:
        """Who this sighting is; None for a beacon, which is never a shopper.

        A beacon is known by any frame only beacons send, in this sighting or earlier from the
        same address (``_fleet_observe`` remembers those), so an EID beacon's EID frames between
        its encrypted TLM frames count neither in footfall nor as a visit.
        """
        if self._beacon_sightings.is_beacon_address(sighting.address, now):
            identities = [f.identifier for f in frames if isinstance(f, IBeacon | EddystoneUid | AltBeacon)]
            if not identities:
                self.counters["beacon_telemetry"] += 1  # TLM, URL, or an EID beacon's frames
            elif any(identifier in self._fleet for identifier in identities):
                self.counters["fixed_beacon"] += 1
            else:
                self.counters["unknown_beacon"] += 1
            return None
        for frame in frames:
            if isinstance(frame, EddystoneEid):
                customer_id = self._resolver.resolve(frame.eid, now)
                if customer_id is not None:
                    self.counters["resolved"] += 1
                    self.token_clock.resolved(self._resolver, customer_id, frame.eid, now)
                    return Subject("customer", customer_id)
                self.counters["unresolved_tokens"] += 1
                self.token_clock.unresolved(self._resolver, frame.eid, now)
                return Subject("anonymous", self._hasher.for_token(self._local_day(now), frame.eid))
            if isinstance(frame, IBeacon | AltBeacon):
                self.counters["unknown_beacon"] += 1  # the fleet's own are remembered above
                return None
        return Subject("anonymous", self._hasher.for_address(self._local_day(now), sighting.address))

    def _local_day(self, now: float) -> int:
        """The store's local date as an ordinal; computed once per local day, not per sighting."""
        start, end, day = self._day_span
        if start <= now < end:
            return day
        local = datetime.fromtimestamp(now, self._tz)
        midnight = datetime.combine(local.date(), dt_time(0), self._tz)
        next_midnight = datetime.combine(local.date() + timedelta(days=1), dt_time(0), self._tz)
        self._day_span = (midnight.timestamp(), next_midnight.timestamp(), local.toordinal())
        return local.toordinal()

    # ------------------------------------------------------------------ time

    def shift(self, delta_s: float) -> None:
        """The agent followed a wall-clock step (``core.wallclock``): re-date everything held.

        Every time the core keeps (open visits, footfall interval, the journey rules' waits and
        promises, beacons, calibration windows) moves by the step, so what is measured from it
        (absence, gaps, waits, silence) keeps its length and nothing opens or ends because the
        clock moved; what is reported from now on carries the corrected time. Recognised
        customers' open visits are rewritten with it."""
        self._tracker.shift(delta_s)
        self._footfall.shift(delta_s)
        self._journey.shift(delta_s)
        self._fleet.shift(delta_s)
        self._beacon_sightings.shift(delta_s)
        self._calibration.shift(delta_s)
        self._day_span = (0.0, 0.0, 0)
        self.changed_visits.update(s.id for s in self._tracker.open_visits if s.kind == "customer")

    def tick(self, now: float) -> list[Message]:
        """Close visits gone silent and footfall intervals that have ended."""
        self._footfall.start(now)
        messages: list[Message] = []
        # The scheduled tick, not the first token heard after a boundary, rebuilds the tables.
        self._resolver.advance(now)
        self.token_clock.prepare(self._resolver, now)
        self._footfall.settle(now)
        for event in self._tracker.expire(now):
            messages.extend(self._presence_messages(event, now))
        messages.extend(
            self._journey.tick(
                now, self._present_customers, functools.partial(self.zone_occupancy, now, QUEUE_HEARD_S)
            )
        )
        messages.extend(self._footfall.close(now, self.occupancy, self.zone_occupancy))
        messages.extend(self._fleet.tick(now))
        calibration = self._calibration
        if calibration.active and now >= calibration.next_fit_at:  # a refit is due
            messages.extend(self._calibrate(now))
        return messages

    def _calibrate(self, now: float) -> list[Message]:
        """Refit the receivers (every ``calibration.update_interval_s``) and apply it at once."""
        events = self._calibration.tick(now)
        if not self._calibration.fitted_at(now):
            return []
        power = self._calibration.power()
        if power != self._tracker.measured_power:
            self._tracker.calibrate(power)
        messages: list[Message] = []
        estimates = {e.receiver: e for e in self._calibration.estimates()} if events else {}
        for event in events:
            if isinstance(event, ReceiverEvent):
                estimate = estimates[event.receiver]
                messages.append(
                    ReceiverMessage(
                        **self._envelope.at(now), event=event.event,
                        previous_offset_db=event.previous_offset_db,
                        receiver=ReceiverCalibration(**dataclasses.asdict(estimate)),
                    )
                )  # fmt: skip
                self.counters[f"receiver_{event.event}"] += 1
            else:
                moved = self._fleet.calibration_event(event.beacon_id, event.event, now, event.residuals_db)
                if moved is not None:
                    messages.append(moved)
                self.counters[f"beacon_{event.event}"] += 1
        return messages

    @property
    def token_resolver(self) -> TokenResolver:
        """For the daemon's start, which has the current window's AES done in a worker."""
        return self._resolver

    @property
    def tables_pending(self) -> bool:
        """Whether token windows are still to be built (``precompute`` has work)."""
        return self._resolver.pending or self.token_clock.pending

    @property
    def tables_urgent(self) -> bool:
        """Whether the window of now is still to be built (at start, after a full registry): its
        slices then go between sightings, not only when the driver is idle."""
        return not self._resolver.current_ready

    def precompute(self, now: float, slots: int = TOKEN_SLICE_SLOTS) -> bool:
        """One slice of token-window building, for the idle moments between sightings: the
        windows around ``now`` first (at start), then the next one ahead of its rotation.
        Returns whether work remains."""
        self._resolver.advance(now)
        if self._resolver.pending:  # the live windows first, then a suspect clock's far ones
            return self._resolver.precompute(slots) or self.token_clock.pending
        return self.token_clock.precompute(self._resolver, slots)

    @property
    def token_tables(self) -> dict[str, int]:
        """Figures for status: complete wanted windows, builds and unready rotations so far, and
        the far windows a suspect clock is searching (held now, built so far)."""
        resolver = self._resolver
        return {
            "ready_windows": resolver.ready_windows,
            "windows_built": resolver.windows_built,
            "rotations_unready": resolver.rotations_unready,
            "far_windows": self.token_clock.far_windows,
            "far_windows_built": self.token_clock.far_windows_built,
        }

    def _visit_ended(self, ended: VisitEnded, now: float) -> VisitMessage:
        visit = ended.visit
        path = [
            ZoneInterval(
                zone=stay.zone, entered_at=utc(stay.entered_at),
                exited_at=utc(stay.exited_at or visit.last_seen),
                dwell_s=round(stay.duration(visit.last_seen), 3),
            )
            for stay in visit.path
        ]  # fmt: skip
        return VisitMessage(
            **self._envelope.at(now),
            visit_id=visit.visit_id, customer_id=visit.subject.id, phase="ended",
            started_at=utc(visit.started_at), ended_at=utc(visit.last_seen),
            duration_s=round(visit.last_seen - visit.started_at, 3),
            entry_receiver=visit.entry_receiver, receivers=sorted(visit.receivers), path=path,
        )  # fmt: skip


def _token_clock(config: AgentConfig) -> TokenClock:
    identity = config.identity
    return TokenClock(identity.rotation_exponent, identity.skew_windows, config.clock.token_search_windows)


def _nobody_in_the_store(customer_id: str) -> OpenVisit | None:
    """Replayed downlinks meet no open visit: they were applied before this start."""
    return None

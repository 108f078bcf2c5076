"""A store day from first principles, with the answer key: what ``edge-agent simulate`` writes.

Shoppers arrive through the day at the entrance zone, walk to two to four zones along the
adjacency graph (via zone centres), browse each for a log-normal time, and leave through the
entrance. Their phones advertise every ``advertising_interval_s``; every receiver hears each
advertisement with RSSI from the log-distance path-loss model plus log-normal shadowing
(``sigma_db``), a per-phone transmit offset, a sensitivity floor and independent packet loss.

What the phones show depends on who carries them (DESIGN §4):
- app users on Android advertise an Eddystone-EID token;
- app users on iOS in the background show only Apple's overflow area; the agent reads their
  token over GATT, so from ``gatt_delay_s`` after each new address their sightings carry the
  token, exactly as the BLE runtime hands them to the core (replay has no radio to connect to);
- everyone else shows Apple/Google continuity data under a random address rotating every
  ``address_rotation_s``.
Some app users have not consented: they advertise tokens that must resolve to nobody.

The ground truth lists every visit with its zone intervals, sampled once a second from the
shopper's true position against the zone polygons. Deterministic for a seed; sightings are
generated lazily in time order, so a day of a million sightings needs little memory. Pure.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
import zoneinfo
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

from edge_agent.core.calibration import REFERENCE_POWER_DBM
from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import (
    EddystoneEid,
    EddystoneUid,
    IBeacon,
    encode_apple_overflow,
    encode_eddystone_eid,
    encode_eddystone_uid,
    encode_ibeacon,
)
from edge_agent.core.identity import eid_token
from edge_agent.core.layout import Point, StoreLayout
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting

# Apple continuity "Nearby Info": a phone that says nothing about its owner.
ANONYMOUS_PAYLOAD = {0x004C: bytes.fromhex("1005031c0a1b2c")}


@dataclass(frozen=True, slots=True)
class SimulationSettings:
    shoppers: int = 300
    seed: int = 7
    day: date = date(2026, 11, 21)
    open_hours: tuple[int, int] = (9, 21)
    sigma_db: float = 4.0
    loss: float = 0.1
    app_share: float = 0.3
    ios_share: float = 0.5
    consent_share: float = 0.85
    path_loss_exponent: float = 2.2
    sensitivity_dbm: float = -95.0
    # Phones differ by up to about 10 dB between models: each gets a normal offset, clipped.
    phone_offset_sigma_db: float = 3.0
    phone_offset_max_db: float = 5.0
    advertising_interval_s: float = 1.0
    address_rotation_s: float = 900.0
    gatt_delay_s: float = 3.0
    walking_speed_m_s: tuple[float, float] = (0.7, 1.3)
    median_browse_s: float = 120.0
    # App users who come to collect an order visit this zone last before leaving.
    collect_zone: str | None = None
    collect_share: float = 0.0
    # The positioned fixed beacons ([[beacons]] position) advertise this often, heard by every
    # receiver in range with the phones' path loss, shadowing and loss. Real beacons advertise
    # faster; every 10 s gives calibration 60 readings a pair in its 10-minute window and keeps
    # a simulated day's trace within a third of the phones' sightings.
    beacon_interval_s: float = 10.0
    # (receiver, dB, seconds after opening): that receiver's gain shifts then (``--drift``).
    drift: tuple[tuple[str, float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class SimulatedCustomer:
    customer_id: str
    identity_key: bytes
    consent_service: bool
    consent_marketing: bool
    platform: str  # "android" | "ios"
    collects: bool = False  # walks to the collect zone before leaving (click-and-collect)

    @property
    def consenting(self) -> bool:
        return self.consent_service or self.consent_marketing


@dataclass(slots=True)
class Shopper:
    shopper_id: str
    customer: SimulatedCustomer | None
    times: list[float]
    points: list[Point]
    phase: float  # when in each advertising interval this phone advertises
    offset_db: float  # this phone's transmit power against the reference phone
    rotation_phase: float  # where in its address rotation the phone is at arrival
    cursor: int = 0

    @property
    def arrive(self) -> float:
        return self.times[0]

    @property
    def leave(self) -> float:
        return self.times[-1]

    def position(self, ts: float) -> Point:
        """Piecewise-linear position; calls must come in non-decreasing time (a cursor)."""
        times = self.times
        while self.cursor + 1 < len(times) - 1 and times[self.cursor + 1] <= ts:
            self.cursor += 1
        return self._on_leg(self.cursor, ts)

    def position_at(self, ts: float) -> Point:
        """Random access (for the ground truth)."""
        return self._on_leg(max(0, min(len(self.times) - 2, bisect.bisect_right(self.times, ts) - 1)), ts)

    def _on_leg(self, i: int, ts: float) -> Point:
        """Where the shopper is at ``ts`` on the leg from waypoint ``i`` to ``i + 1``."""
        t0, t1 = self.times[i], self.times[i + 1]
        (x0, y0), (x1, y1) = self.points[i], self.points[i + 1]
        f = 0.0 if t1 <= t0 else min(1.0, max(0.0, (ts - t0) / (t1 - t0)))
        return (x0 + f * (x1 - x0), y0 + f * (y1 - y0))


@dataclass(frozen=True, slots=True)
class SimulatedBeacon:
    beacon_id: str
    position: Point
    power_dbm: float  # what a reference receiver reads at 1 m
    address: str
    payload: dict[str, Any]  # Sighting's keyword fields: the beacon's frame
    phase: float
    receiver: str | None = None  # the node that advertises it, if it is a receiver's own


@dataclass(frozen=True, slots=True)
class TrueVisit:
    shopper_id: str
    customer_id: str | None
    consenting: bool
    start: float
    end: float
    zones: list[tuple[str, float, float]]  # (zone, entered, left)

    def zone_at(self, ts: float) -> str | None:
        return zone_at(self.zones, ts)


def zone_at(zones: Sequence[tuple[str, float, float]], ts: float) -> str | None:
    """The zone of the (zone, entered, left) interval holding ``ts``, if any."""
    for zone, entered, left in zones:
        if entered <= ts < left:
            return zone
    return None


@dataclass(slots=True)
class StoreDaySimulation:
    settings: SimulationSettings
    customers: list[SimulatedCustomer]
    shoppers: list[Shopper]
    layout: StoreLayout
    store_id: str
    rotation_exponent: int
    overflow_bit: int
    measured_power: dict[str, int] = field(default_factory=dict)
    beacons: list[SimulatedBeacon] = field(default_factory=list)
    opening: float = 0.0
    closing: float = 0.0

    def sightings(self) -> Iterator[Sighting]:
        """Every sighting of the day in time order, generated as time advances."""
        s = self.settings
        rng = random.Random(f"{s.seed}:radio")
        beacon_rng = random.Random(f"{s.seed}:beacons")
        receivers: list[tuple[str, float, float, float]] = [
            (rid, x, y, self.measured_power[rid]) for rid, (x, y) in sorted(self.layout.positions.items())
        ]
        drifts = sorted((self.opening + at, rid, db) for rid, db, at in s.drift)
        arrivals = sorted(self.shoppers, key=lambda sh: sh.arrive)
        for shopper in arrivals:
            shopper.cursor = 0
        waiting = 0
        active: list[Shopper] = []
        interval = s.advertising_interval_s
        tick = math.floor(arrivals[0].arrive / interval) * interval if arrivals else 0.0
        end = max((sh.leave for sh in arrivals), default=0.0)
        if self.beacons and self.closing > self.opening:  # beacons advertise all day, shoppers or not
            tick = min(tick, math.floor(self.opening / interval) * interval)
            end = max(end, self.closing)
        tokens: dict[tuple[str, int], bytes] = {}
        ten_log = 10.0 * s.path_loss_exponent
        while tick <= end:
            while waiting < len(arrivals) and arrivals[waiting].arrive < tick + interval:
                active.append(arrivals[waiting])
                waiting += 1
            active = [sh for sh in active if sh.leave >= tick]
            while drifts and drifts[0][0] <= tick:  # a receiver's gain shifts from now on
                _, drifted, db = drifts.pop(0)
                receivers = [(r, x, y, p + db if r == drifted else p) for r, x, y, p in receivers]
            batch: list[Sighting] = self._beacon_batch(beacon_rng, receivers, tick) if self.beacons else []
            for shopper in active:
                ts = round(tick + shopper.phase * interval, 3)
                if not shopper.arrive <= ts <= shopper.leave:
                    continue
                x, y = shopper.position(ts)
                address, payload = self._advertisement(shopper, ts, tokens)
                for rid, rx, ry, power in receivers:
                    distance = max(0.5, math.hypot(x - rx, y - ry))
                    rssi = (
                        power
                        + shopper.offset_db
                        - ten_log * math.log10(distance)
                        + rng.gauss(0.0, s.sigma_db)
                    )
                    if rssi < s.sensitivity_dbm or rng.random() < s.loss:
                        continue
                    batch.append(Sighting(ts, rid, address, max(-127, round(rssi)), **payload))
            batch.sort(key=lambda sighting: (sighting.ts, sighting.receiver, sighting.address))
            yield from batch
            tick += interval

    def _beacon_batch(
        self, rng: random.Random, receivers: list[tuple[str, float, float, float]], tick: float
    ) -> list[Sighting]:
        """The fixed beacons' advertisements due in [tick, tick + advertising interval)."""
        s = self.settings
        batch: list[Sighting] = []
        ten_log = 10.0 * s.path_loss_exponent
        period = s.beacon_interval_s
        for beacon in self.beacons:
            first = math.ceil((tick - beacon.phase * period) / period)
            ts = first * period + beacon.phase * period
            while ts < tick + s.advertising_interval_s:
                for rid, rx, ry, power in receivers:
                    if rid == beacon.receiver:
                        continue  # a node does not hear its own advertisement
                    distance = max(0.5, math.hypot(beacon.position[0] - rx, beacon.position[1] - ry))
                    rssi = power + beacon.power_dbm - REFERENCE_POWER_DBM - ten_log * math.log10(distance)
                    rssi += rng.gauss(0.0, s.sigma_db)
                    if rssi < s.sensitivity_dbm or rng.random() < s.loss:
                        continue
                    rssi_dbm = max(-127, round(rssi))
                    batch.append(Sighting(round(ts, 3), rid, beacon.address, rssi_dbm, **beacon.payload))
                ts += period
        return batch

    def _advertisement(
        self, shopper: Shopper, ts: float, tokens: dict[tuple[str, int], bytes]
    ) -> tuple[str, dict[str, Any]]:  # Sighting's keyword fields
        s = self.settings
        since_arrival = ts - shopper.arrive + shopper.rotation_phase
        rotation = int(since_arrival // s.address_rotation_s)
        address = _address(f"{s.seed}:{shopper.shopper_id}:{rotation}")
        customer = shopper.customer
        if customer is None:
            return address, {"manufacturer_data": ANONYMOUS_PAYLOAD}
        window = int(ts) >> self.rotation_exponent
        token = tokens.get((customer.customer_id, window))
        if token is None:
            token = tokens[(customer.customer_id, window)] = eid_token(
                customer.identity_key, self.rotation_exponent, int(ts)
            )
        frame = {EDDYSTONE_SERVICE_UUID: encode_eddystone_eid(EddystoneEid(-20, token))}
        if customer.platform == "android":
            return address, {"service_data": frame, "service_uuids": (EDDYSTONE_SERVICE_UUID,)}
        company, overflow = encode_apple_overflow([self.overflow_bit])
        address_age = since_arrival - rotation * s.address_rotation_s
        if min(address_age, ts - shopper.arrive) < s.gatt_delay_s:
            return address, {"manufacturer_data": {company: overflow}}  # token not read yet
        return address, {"manufacturer_data": {company: overflow}, "service_data": frame}

    def truth(self) -> list[TrueVisit]:
        """Each shopper's visit and zone intervals, from the true position once a second."""
        visits = []
        for shopper in sorted(self.shoppers, key=lambda sh: sh.arrive):
            zones: list[tuple[str, float, float]] = []
            ts = shopper.arrive
            while ts <= shopper.leave:
                zone = self.layout.zone_at(shopper.position_at(ts))
                if zones and zones[-1][0] == zone and zones[-1][2] == ts:
                    zones[-1] = (zone, zones[-1][1], min(ts + 1.0, shopper.leave))
                elif zone is not None:
                    zones.append((zone, ts, min(ts + 1.0, shopper.leave)))
                ts += 1.0
            customer = shopper.customer
            visits.append(
                TrueVisit(
                    shopper.shopper_id,
                    None if customer is None else customer.customer_id,
                    customer is not None and customer.consenting,
                    shopper.arrive,
                    shopper.leave,
                    zones,
                )
            )
        return visits


def simulate_store_day(config: AgentConfig, settings: SimulationSettings) -> StoreDaySimulation:
    """Plan the day's shoppers for the store ``config`` describes (layout checked here)."""
    layout = StoreLayout.from_config(config)
    _check_layout(config, layout)
    rng = random.Random(f"{settings.seed}:plan")
    tz = zoneinfo.ZoneInfo(config.store.timezone)
    opening = datetime.combine(settings.day, time(settings.open_hours[0]), tz).timestamp()
    closing = datetime.combine(settings.day, time(settings.open_hours[1]), tz).timestamp()
    app_users = round(settings.shoppers * settings.app_share)
    customers = [_customer(rng, settings, index) for index in range(app_users)]
    shoppers: list[Shopper] = []
    for index in range(settings.shoppers):
        customer = customers[index] if index < app_users else None
        arrival = rng.uniform(opening, max(opening + 1, closing - 3600))
        collect = settings.collect_zone if customer is not None and customer.collects else None
        times, points = _walk(rng, layout, arrival, settings, collect)
        shoppers.append(
            Shopper(
                f"shopper-{index + 1:05d}", customer, times, points,
                phase=rng.random(), offset_db=_phone_offset(rng, settings),
                rotation_phase=rng.uniform(0, settings.address_rotation_s),
            )
        )  # fmt: skip
    measured = {r.id: r.measured_power_dbm for r in config.receivers}
    return StoreDaySimulation(
        settings, customers, shoppers, layout, config.store.id, config.identity.rotation_exponent,
        config.gatt.overflow_bit if config.gatt.overflow_bit is not None else 42, measured,
        simulated_beacons(config, settings.seed), opening, closing,
    )  # fmt: skip


def _phone_offset(rng: random.Random, settings: SimulationSettings) -> float:
    offset = rng.gauss(0.0, settings.phone_offset_sigma_db)
    return max(-settings.phone_offset_max_db, min(settings.phone_offset_max_db, offset))


def simulated_beacons(config: AgentConfig, seed: int) -> list[SimulatedBeacon]:
    """The configuration's positioned beacons (and receivers' own), with frames that name them."""
    rng = random.Random(f"{seed}:beacon-phases")
    own = {r.beacon: r for r in config.receivers if r.beacon is not None}
    beacons = []
    for beacon in config.beacons:
        node = own.get(beacon.id)
        position = beacon.position or (node.position if node is not None else None)
        frame = beacon_frame(beacon.id, beacon.measured_power_dbm)
        if position is None or frame is None:
            continue
        power, payload = frame
        address = "C" + _address(f"beacon:{beacon.id}")[1:]  # a static random address (top bits 11)
        beacons.append(
            SimulatedBeacon(
                beacon.id, position, power, address, payload, rng.random(),
                None if node is None else node.id,
            )
        )  # fmt: skip
    return beacons


def beacon_frame(beacon_id: str, power_dbm: int | None) -> tuple[float, dict[str, Any]] | None:
    """(1 m power, Sighting keyword fields) of a frame carrying ``beacon_id``; None if unknown kind."""
    parts = beacon_id.split(":")
    power = REFERENCE_POWER_DBM if power_dbm is None else float(power_dbm)
    if parts[0] == "ibeacon" and len(parts) == 4:
        company, data = encode_ibeacon(IBeacon(parts[1], int(parts[2]), int(parts[3]), round(power)))
        return power, {"manufacturer_data": {company: data}}
    if parts[0] == "eddystone-uid" and len(parts) == 3:
        # Eddystone announces its power at 0 m; 1 m is 41 dB below.
        frame = EddystoneUid(round(power) + 41, bytes.fromhex(parts[1]), bytes.fromhex(parts[2]))
        return power, {
            "service_data": {EDDYSTONE_SERVICE_UUID: encode_eddystone_uid(frame)},
            "service_uuids": (EDDYSTONE_SERVICE_UUID,),
        }
    return None


class LayoutIncomplete(ValueError):
    """The configuration lacks what the simulator needs; the message names the TOML key."""


def _check_layout(config: AgentConfig, layout: StoreLayout) -> None:
    if layout.entrance is None:
        raise LayoutIncomplete("store.entrance_zone: the simulator needs the zone shoppers enter by")
    for index, zone in enumerate(config.zones):
        if not zone.polygon:
            raise LayoutIncomplete(f"zones[{index}].polygon: the simulator needs every zone's outline")
    for index, receiver in enumerate(config.receivers):
        if receiver.position is None:
            raise LayoutIncomplete(
                f"receivers[{index}].position: the simulator needs every receiver's position"
            )
    if len(config.zones) < 2:
        raise LayoutIncomplete("zones: the simulator needs an entrance and at least one other zone")


def _customer(rng: random.Random, settings: SimulationSettings, index: int) -> SimulatedCustomer:
    customer_id = f"cust-{index + 1:05d}"
    key = hashlib.blake2b(f"sim-identity:{settings.seed}:{customer_id}".encode(), digest_size=16).digest()
    consenting = rng.random() < settings.consent_share
    return SimulatedCustomer(
        customer_id, key, consent_service=consenting, consent_marketing=consenting and rng.random() < 0.5,
        platform="ios" if rng.random() < settings.ios_share else "android",
        collects=settings.collect_zone is not None and rng.random() < settings.collect_share,
    )  # fmt: skip


def _walk(
    rng: random.Random,
    layout: StoreLayout,
    arrival: float,
    settings: SimulationSettings,
    collect: str | None = None,
) -> tuple[list[float], list[Point]]:
    assert layout.entrance is not None
    speed = rng.uniform(*settings.walking_speed_m_s)
    others = [z for z in layout.zones if z not in (layout.entrance, collect)]
    targets = rng.sample(others, min(len(others), rng.randint(2, 4)))
    if collect is not None:
        targets.append(collect)
    times = [arrival]
    points = [_point_in(rng, layout, layout.entrance)]

    def go(point: Point, pause: float = 0.0) -> None:
        x0, y0 = points[-1]
        times.append(times[-1] + math.hypot(point[0] - x0, point[1] - y0) / speed)
        points.append(point)
        if pause > 0:
            times.append(times[-1] + pause)
            points.append(point)

    go(points[0], rng.uniform(5, 20))  # through the door, a look around
    here = layout.entrance
    for target in [*targets, layout.entrance]:
        for via in layout.route(here, target)[1:-1]:
            go(_centre(layout, via))
        browse = min(900.0, max(20.0, rng.lognormvariate(math.log(settings.median_browse_s), 0.6)))
        if target == layout.entrance:
            browse = rng.uniform(5, 15)
        stops = 1 if target == layout.entrance else rng.randint(1, 3)
        for _ in range(stops):
            go(_point_in(rng, layout, target), browse / stops)
        here = target
    return times, points


def _centre(layout: StoreLayout, zone: str) -> Point:
    corners = layout.polygons[zone]
    return (sum(x for x, _ in corners) / len(corners), sum(y for _, y in corners) / len(corners))


def _point_in(rng: random.Random, layout: StoreLayout, zone: str, margin: float = 0.75) -> Point:
    """A uniform point inside the zone, kept ``margin`` from its edges where the zone allows."""
    corners = layout.polygons[zone]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    for attempt in range(200):
        inset = margin if attempt < 100 else 0.0
        point = (rng.uniform(min(xs) + inset, max(xs) - inset), rng.uniform(min(ys) + inset, max(ys) - inset))
        if layout.zone_at(point) == zone:
            return point
    return _centre(layout, zone)


def _address(material: str) -> str:
    """A resolvable private address (top bits 01), derived from the material."""
    raw = bytearray(hashlib.blake2b(material.encode(), digest_size=6).digest())
    raw[0] = (raw[0] & 0x3F) | 0x40
    return ":".join(f"{b:02X}" for b in raw)

"""A seeded synthetic store day: sightings plus the downlinks HQ would have sent beforehand.

Good enough to exercise every stage (fixed beacons, app customers advertising Eddystone-EID
tokens, anonymous phones, click-and-collect orders), deliberately simple radio: each receiver
hears a shopper strongly in its own zone and weakly next door, with packet loss. The accurate
store simulator (paths, path-loss, shadowing, ground truth) is ``edge-agent simulate``'s job.
"""

from __future__ import annotations

import hashlib
import json
import random
import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time

from edge_agent.const import EDDYSTONE_SERVICE_UUID
from edge_agent.frames import (
    EddystoneEid,
    EddystoneUid,
    IBeacon,
    encode_eddystone_eid,
    encode_eddystone_uid,
    encode_ibeacon,
)
from edge_agent.identity import eid_token
from edge_agent.sighting import Sighting

# Receivers of the demo store (config edge_agent/data/demo.toml), entrance first.
RECEIVERS = ("entrance", "grocery", "electronics", "clothing", "counter")
SHOPPING_ZONES = ("grocery", "electronics", "clothing")
STORE_BEACON_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
EDDYSTONE_NAMESPACE = bytes.fromhex("edd1ebeac04e5defa017")
# One advertisement every this many seconds reaches a receiver (phones advertise faster, but
# the demo keeps its trace small).
SIGHTING_PERIOD_S = 4.0


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    customer_id: str
    identity_key: bytes
    consent_service: bool
    consent_marketing: bool
    order_id: str | None


@dataclass(slots=True)
class StoreDay:
    sightings: list[Sighting]
    customers: list[DemoCustomer]
    downlinks: list[tuple[str, bytes]] = field(default_factory=list)


def generate(
    seed: int = 7,
    day: date = date(2026, 11, 21),
    timezone: str = "Europe/Rome",
    shoppers: int = 240,
    app_customers: int = 30,
    open_hours: tuple[int, int] = (9, 21),
    loss: float = 0.1,
    rotation_exponent: int = 10,
) -> StoreDay:
    rng = random.Random(seed)
    tz = zoneinfo.ZoneInfo(timezone)
    opening = datetime.combine(day, time(open_hours[0]), tz).timestamp()
    closing = datetime.combine(day, time(open_hours[1]), tz).timestamp()
    customers = _customers(rng, seed, app_customers)
    sightings: list[Sighting] = []
    sightings.extend(_fixed_beacons(opening, closing))
    app_users = iter(customers)
    for index in range(shoppers):
        arrival = rng.uniform(opening, closing - 3600)
        customer = next(app_users, None) if index % max(1, shoppers // app_customers) == 0 else None
        path = _path(rng, arrival, customer is not None and customer.order_id is not None)
        address = _random_address(rng)
        for ts, zone in path:
            for receiver in RECEIVERS:
                rssi = _rssi(rng, receiver, zone)
                if rssi is None or rng.random() < loss:
                    continue
                sightings.append(_phone_sighting(ts, receiver, address, rssi, customer, rotation_exponent))
    sightings.sort(key=lambda s: (s.ts, s.receiver, s.address))
    return StoreDay(sightings, customers, _downlinks(customers))


def _customers(rng: random.Random, seed: int, count: int) -> list[DemoCustomer]:
    customers = []
    for index in range(count):
        cid = f"cust-{index + 1:04d}"
        key = hashlib.blake2b(f"demo-identity:{seed}:{cid}".encode(), digest_size=16).digest()
        # Most customers agreed to service messages; a few to nothing (they stay anonymous).
        consent_service = index % 10 != 9
        consent_marketing = index % 3 == 0
        order = f"ORD-{1000 + index}" if index % 4 == 0 else None
        customers.append(
            DemoCustomer(cid, key, consent_service, consent_service and consent_marketing, order)
        )
    rng.shuffle(customers)
    return customers


def _downlinks(customers: list[DemoCustomer]) -> list[tuple[str, bytes]]:
    registry = {
        "schema": "customers.v1",
        "message_id": "demo-registry-1",
        "full": True,
        "version": 1,
        "upsert": [
            {
                "customer_id": c.customer_id,
                "identity_key": c.identity_key.hex(),
                "consent": {"service": c.consent_service, "marketing": c.consent_marketing},
            }
            for c in sorted(customers, key=lambda c: c.customer_id)
        ],
    }
    orders = {
        "schema": "orders.v1",
        "message_id": "demo-orders-1",
        "orders": [
            {"order_id": c.order_id, "customer_id": c.customer_id, "status": "ready",
             "pickup_point": "Counter B", "items": ["SKU-1001"]}
            for c in sorted(customers, key=lambda c: c.customer_id) if c.order_id
        ],
    }  # fmt: skip
    return [("customers", json.dumps(registry).encode()), ("orders", json.dumps(orders).encode())]


def _path(rng: random.Random, arrival: float, collects: bool) -> list[tuple[float, str]]:
    """(time, zone) every SIGHTING_PERIOD_S from arrival to departure."""
    stops = [("entrance", rng.uniform(30, 90))]
    for zone in rng.sample(SHOPPING_ZONES, rng.randint(1, 3)):
        stops.append((zone, rng.uniform(120, 900)))
    if collects:
        stops.append(("counter", rng.uniform(120, 300)))
    stops.append(("entrance", rng.uniform(20, 60)))
    points: list[tuple[float, str]] = []
    ts = arrival
    for zone, dwell in stops:
        end = ts + dwell
        while ts < end:
            points.append((round(ts, 3), zone))
            ts += SIGHTING_PERIOD_S + rng.uniform(-0.5, 0.5)
    return points


def _rssi(rng: random.Random, receiver: str, zone: str) -> int | None:
    if receiver == zone:
        return round(rng.gauss(-62, 4))
    if receiver == "entrance" or zone == "entrance":
        return round(rng.gauss(-82, 4)) if rng.random() < 0.5 else None
    return round(rng.gauss(-88, 4)) if rng.random() < 0.3 else None


def _random_address(rng: random.Random) -> str:
    # A resolvable private address: the two top bits of the first byte are 01.
    first = (rng.randrange(256) & 0x3F) | 0x40
    return ":".join(f"{b:02X}" for b in [first, *(rng.randrange(256) for _ in range(5))])


def _phone_sighting(
    ts: float, receiver: str, address: str, rssi: int, customer: DemoCustomer | None, k: int
) -> Sighting:
    if customer is None:
        # Apple "Nearby Info" continuity data: a phone that tells us nothing about its owner.
        return Sighting(
            ts, receiver, address, rssi, manufacturer_data={0x004C: bytes.fromhex("1005031c0a1b2c")}
        )
    token = eid_token(customer.identity_key, k, int(ts))
    frame = encode_eddystone_eid(EddystoneEid(tx_power=-20, eid=token))
    return Sighting(
        ts, receiver, address, rssi,
        service_data={EDDYSTONE_SERVICE_UUID: frame}, service_uuids=(EDDYSTONE_SERVICE_UUID,),
    )  # fmt: skip


def _fixed_beacons(opening: float, closing: float) -> list[Sighting]:
    sightings = []
    for minor, receiver in enumerate(RECEIVERS, start=1):
        company, ibeacon = encode_ibeacon(IBeacon(STORE_BEACON_UUID, 100, minor, -59))
        address = f"C0:FF:EE:00:00:{minor:02X}"
        ts = opening + minor
        while ts < closing:
            sightings.append(Sighting(ts, receiver, address, -55, manufacturer_data={company: ibeacon}))
            ts += 60.0
    uid = encode_eddystone_uid(EddystoneUid(-20, EDDYSTONE_NAMESPACE, bytes.fromhex("000000000001")))
    ts = opening + 7
    while ts < closing:
        sightings.append(
            Sighting(ts, "counter", "C0:FF:EE:00:01:01", -58, service_data={EDDYSTONE_SERVICE_UUID: uid})
        )
        ts += 60.0
    return sightings

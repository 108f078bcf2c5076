"""Builders for sightings and downlinks used across tests."""

from __future__ import annotations

import hashlib
import json

from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import EddystoneEid, encode_eddystone_eid
from edge_agent.core.identity import eid_token
from edge_agent.core.sighting import Sighting

KEYS = {f"c{i}": bytes([i]) * 16 for i in range(1, 10)}


def app_sighting(
    customer: str, ts: float, receiver: str = "entrance", rssi: int = -60, k: int = 10
) -> Sighting:
    token = eid_token(KEYS[customer], k, int(ts))
    return Sighting(
        ts,
        receiver,
        "5A:00:00:00:00:01",
        rssi,
        service_data={EDDYSTONE_SERVICE_UUID: encode_eddystone_eid(EddystoneEid(-20, token))},
    )


def phone_sighting(address: str, ts: float, receiver: str = "entrance", rssi: int = -60) -> Sighting:
    return Sighting(ts, receiver, address, rssi, manufacturer_data={0x004C: bytes.fromhex("1005031c")})


def customers_downlink(*customers: tuple[str, bool, bool], message_id: str = "reg-1") -> bytes:
    """``customers``: (customer id, service consent, marketing consent)."""
    return json.dumps(
        {
            "schema": "customers.v1",
            "message_id": message_id,
            "upsert": [
                {"customer_id": c, "identity_key": KEYS[c].hex(), "consent": {"service": s, "marketing": m}}
                for c, s, m in customers
            ],
        }
    ).encode()


def orders_downlink(*orders: tuple[str, str, str], message_id: str = "ord-1") -> bytes:
    """``orders``: (order id, customer id, status)."""
    return json.dumps(
        {
            "schema": "orders.v1",
            "message_id": message_id,
            "orders": [
                {"order_id": o, "customer_id": c, "status": st, "pickup_point": "Counter B"}
                for o, c, st in orders
            ],
        }
    ).encode()


def many_customers(count: int) -> dict[str, bytes]:
    """``count`` customers with distinct identity keys, added to KEYS so the builders know them."""
    keys = {f"m{i:05d}": hashlib.blake2b(f"key{i}".encode(), digest_size=16).digest() for i in range(count)}
    KEYS.update(keys)
    return keys

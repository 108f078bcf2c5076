"""Sightings from remote receivers (ESP32 nodes on the store's MQTT). Pure parsers.

Two formats:
- **generic**: topic ``{prefix}/stores/{store}/sightings/{receiver}``, payload one trace line
  (DESIGN §3) or a JSON array of them. It carries the raw advertisement, so everything the
  local scanner can decode (tokens included) works the same from a remote node.
- **ESPresense**: topic ``espresense/devices/{id}/{room}``, payload ``{"mac", "id", "rssi",
  "rssi@1m", ...}``. ESPresense sends a derived id, not the advertisement, so only what the id
  says survives: ``iBeacon:{uuid}-{major}-{minor}`` becomes an iBeacon frame again (store
  beacons keep working), anything else is an address-only sighting (counted, never resolved).
  The room is the receiver id.

A message from a receiver not in the configuration, one that does not parse, or one dated too
far from the local clock (``check_clock_skew``) is rejected with a code (what the counters and
``status.v1`` count it as) and a reason (what the warning says; never the payload's values, which
may carry addresses); the caller counts it and drops it.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import ValidationError

from edge_agent.core.errors import key_path
from edge_agent.core.frames import IBeacon, encode_ibeacon
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import TraceLine

# Remote nodes send small messages; anything larger is a fault or an attack.
MAX_REMOTE_MESSAGE_BYTES = 64 * 1024
# ESPresense's iBeacon id: "iBeacon:<uuid>-<major>-<minor>".
_ESPRESENSE_IBEACON = re.compile(
    r"^iBeacon:([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})-(\d{1,5})-(\d{1,5})$"
)
_MAC = re.compile(r"^[0-9a-fA-F]{12}$")


RejectCode = Literal[
    "unknown_receiver", "too_large", "not_json", "invalid", "clock_skew", "unexpected_topic", "parser_error"
]


@dataclass(frozen=True, slots=True)
class RemoteRejected:
    code: RejectCode
    reason: str
    # The receiver named by the topic, when there is one; clock_skew: the worst sighting's
    # ``ts`` minus the local wall clock (positive: the node's clock is ahead).
    receiver: str | None = None
    offset_s: float | None = None


def parse_generic(
    receiver: str, payload: bytes, receivers: frozenset[str]
) -> list[Sighting] | RemoteRejected:
    if receiver not in receivers:
        return RemoteRejected("unknown_receiver", f"unknown receiver {receiver!r}", receiver)
    raw = _json(payload, receiver)
    if isinstance(raw, RemoteRejected):
        return raw
    items = raw if isinstance(raw, list) else [raw]
    sightings = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            return RemoteRejected("invalid", f"item {index} is not a JSON object", receiver)
        try:
            sighting = TraceLine.model_validate(item).to_sighting()
        except ValidationError as exc:
            first = exc.errors(include_input=False)[0]
            key = key_path(first["loc"])
            return RemoteRejected("invalid", f"item {index}: {key}: {first['msg']}", receiver)
        # The topic names the receiver; a node cannot speak for another.
        sightings.append(replace(sighting, receiver=receiver))
    return sightings


def check_clock_skew(
    sightings: list[Sighting], now: float, max_skew_s: float
) -> list[Sighting] | RemoteRejected:
    """``sightings`` (of one message, one receiver), or the whole message rejected when one of
    them is dated more than ``max_skew_s`` from ``now``, the local wall clock.

    Rejected, not re-stamped: arrival time is not when the node heard the phone (a node flushes
    what it buffered while the broker was away), so re-stamping would misdate those instead of
    dropping them, and it would hide a clock that is wrong. Dropped and counted, a wrong clock
    shows in ``status`` and the journal the first minute, and the fix is on the node (NTP/SNTP).
    One message shares one clock: one item out of bounds rejects it whole, as a bad item does.
    """
    worst = max((s.ts - now for s in sightings), key=abs, default=0.0)
    if abs(worst) <= max_skew_s:
        return sightings
    receiver = sightings[0].receiver
    return RemoteRejected(
        "clock_skew", f"dated {worst:+.1f} s from the local clock (limit {max_skew_s:g} s)", receiver, worst
    )


def parse_espresense(
    room: str, payload: bytes, now: float, receivers: frozenset[str]
) -> Sighting | RemoteRejected:
    if room not in receivers:
        return RemoteRejected("unknown_receiver", f"unknown receiver {room!r}", room)
    raw = _json(payload, room)
    if isinstance(raw, RemoteRejected):
        return raw
    if not isinstance(raw, dict):
        return RemoteRejected("invalid", "payload is not a JSON object", room)
    rssi = raw.get("rssi")
    if not isinstance(rssi, int | float) or isinstance(rssi, bool) or not -127 <= rssi <= 20:
        return RemoteRejected("invalid", "rssi missing or out of range", room)
    device_id = raw.get("id")
    if not isinstance(device_id, str) or not device_id:
        return RemoteRejected("invalid", "id missing", room)
    mac = raw.get("mac")
    address = _address(mac) if isinstance(mac, str) and _MAC.match(mac) else f"espresense:{device_id}"
    manufacturer: dict[int, bytes] = {}
    beacon = _ESPRESENSE_IBEACON.match(device_id)
    if beacon:
        major, minor = int(beacon.group(2)), int(beacon.group(3))
        power = raw.get("rssi@1m")
        if major > 0xFFFF or minor > 0xFFFF:
            return RemoteRejected("invalid", "iBeacon major/minor out of range", room)
        measured = int(power) if isinstance(power, int | float) and -127 <= power <= 20 else -59
        company, data = encode_ibeacon(IBeacon(str(uuid.UUID(beacon.group(1))), major, minor, measured))
        manufacturer[company] = data
    return Sighting(ts=now, receiver=room, address=address, rssi=round(rssi), manufacturer_data=manufacturer)


def _json(payload: bytes, receiver: str) -> object:
    if len(payload) > MAX_REMOTE_MESSAGE_BYTES:
        return RemoteRejected(
            "too_large",
            f"message of {len(payload)} bytes is over the {MAX_REMOTE_MESSAGE_BYTES}-byte limit",
            receiver,
        )
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return RemoteRejected("not_json", "payload is not JSON", receiver)


def _address(mac: str) -> str:
    return ":".join(mac[i : i + 2] for i in range(0, 12, 2)).upper()

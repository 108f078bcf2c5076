"""What a ``scan --record`` trace may carry out of the store. Pure: sightings and a key in.

A recording leaves the shop in a technician's bag, so by default it holds no phone's real
address and nothing a phone advertises beyond what the agent decodes:

- every address that is not a beacon's becomes a pseudonym, HMAC-SHA256 under a key drawn for
  this one recording and dropped when it ends: one device is one pseudonym within the file,
  and nobody (the technician included) can link it to the device or to another recording. The
  pseudonym is shaped like an address, locally administered, so the trace format and
  ``replay`` take it as they are;
- a non-beacon keeps only the fields ``core.frames`` decodes: Apple's iBeacon and overflow area,
  AltBeacon, the Eddystone service data. Other Apple continuity messages (which fingerprint a
  device), unknown manufacturer data, service UUIDs, names and TX power are dropped;
- a fixed beacon (any sighting decoding to a beacon frame) keeps its address and its fields,
  from then on for the rest of the recording: a technician needs the address to find it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from typing import Final

from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import (
    AltBeacon,
    AppleOverflow,
    BeaconOnly,
    EddystoneEncryptedTlm,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    decode_advertisement,
    decode_sighting,
)
from edge_agent.core.sighting import Sighting

BEACON_FRAMES: Final = (
    IBeacon, AltBeacon, EddystoneUid, EddystoneUrl, EddystoneTlm, EddystoneEncryptedTlm, BeaconOnly,
)  # fmt: skip
# Manufacturer data survives only when it decodes to one of these on its own.
KEPT_MANUFACTURER_FRAMES: Final = (IBeacon, AltBeacon, AppleOverflow)
MIN_KEY_BYTES: Final = 16


def pseudonymous_address(key: bytes, address: str) -> str:
    """A locally administered unicast address derived from ``address`` under ``key``."""
    digest = hmac.new(key, address.upper().encode(), hashlib.sha256).digest()
    # First octet: multicast bit (0x01) clear, locally administered bit (0x02) set (IEEE 802).
    octets = bytes([(digest[0] & 0xFC) | 0x02]) + digest[1:6]
    return ":".join(f"{octet:02X}" for octet in octets)


class RecordingFilter:
    """One recording's pseudonyms and field filter; drop the object to discard the key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the recording key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._beacons: set[str] = set()

    def __repr__(self) -> str:  # never the key
        return f"RecordingFilter({len(self._beacons)} beacons)"

    def pseudonym(self, address: str) -> str:
        # Not cached: one HMAC is a couple of microseconds, a day of rotating phone addresses
        # in a cache would be megabytes.
        return pseudonymous_address(self._key, address)

    def apply(self, sighting: Sighting) -> Sighting:
        """The sighting as it may be written to the recording."""
        if sighting.address in self._beacons or any(
            isinstance(frame, BEACON_FRAMES) for frame in decode_sighting(sighting)
        ):
            self._beacons.add(sighting.address)
            return sighting
        return replace(
            sighting,
            address=self.pseudonym(sighting.address),
            tx_power=None,
            manufacturer_data=kept_manufacturer_data(sighting),
            service_data={
                uuid: data for uuid, data in sighting.service_data.items() if uuid == EDDYSTONE_SERVICE_UUID
            },
            service_uuids=tuple(u for u in sighting.service_uuids if u == EDDYSTONE_SERVICE_UUID),
            name=None,
        )


def kept_manufacturer_data(sighting: Sighting) -> dict[int, bytes]:
    kept: dict[int, bytes] = {}
    for company_id, data in sighting.manufacturer_data.items():
        frames = decode_advertisement({company_id: data}, {})
        if any(isinstance(frame, KEPT_MANUFACTURER_FRAMES) for frame in frames):
            kept[company_id] = data
    return kept

"""A sighting: one advertisement heard by one receiver at one moment.

The shape mirrors bleak's ``AdvertisementData`` so the local scanner, remote ESP32 receivers and
recorded traces all feed the core the same value. Bytes stay bytes here; hex exists only on
the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sighting:
    ts: float
    receiver: str
    address: str
    rssi: int
    tx_power: int | None = None
    manufacturer_data: Mapping[int, bytes] = field(default_factory=dict)
    service_data: Mapping[str, bytes] = field(default_factory=dict)
    service_uuids: tuple[str, ...] = ()
    name: str | None = None

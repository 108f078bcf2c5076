"""Per-device throttling of sightings. Pure: time comes from the sightings themselves.

BlueZ reports a device again for every RSSI change, so a phone next to a receiver produces a
storm of updates that carry no new information. A sighting passes when its payload changed
(a new token, a new TLM reading) or when ``min_interval_s`` has passed since the last one that
passed for that device; RSSI-only updates in between are dropped. Data changes are never lost.
"""

from __future__ import annotations

from collections import OrderedDict

from edge_agent.core.sighting import Sighting

# Devices remembered at most; the least recently seen are forgotten first (a busy mall hears
# thousands of addresses an hour, each rotating every few minutes).
MAX_TRACKED_DEVICES = 20_000


class SightingThrottle:
    def __init__(self, min_interval_s: float, max_devices: int = MAX_TRACKED_DEVICES) -> None:
        self._min_interval = min_interval_s
        self._max_devices = max_devices
        self._last: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        self.dropped = 0

    def admit(self, sighting: Sighting) -> bool:
        key = (sighting.receiver, sighting.address)
        fingerprint = hash(
            (
                tuple(sorted(sighting.manufacturer_data.items())),
                tuple(sorted(sighting.service_data.items())),
                sighting.service_uuids,
                sighting.name,
            )
        )
        previous = self._last.get(key)
        if previous is not None:
            last_ts, last_fingerprint = previous
            if fingerprint == last_fingerprint and sighting.ts - last_ts < self._min_interval:
                self.dropped += 1
                return False
            self._last.move_to_end(key)
        self._last[key] = (sighting.ts, fingerprint)
        if len(self._last) > self._max_devices:
            self._last.popitem(last=False)
        return True

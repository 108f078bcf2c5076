"""Health of the store's fixed beacons. Pure: sightings and time in, messages out.

A beacon is *missing* once unheard for ``beacon_health.missing_after_s`` (counted from the
agent's first tick if it was never heard), *returned* when heard again, and *low on battery*
when its Eddystone-TLM reports less than ``low_battery_mv`` (cleared 100 mV above, so a voltage
wobbling at the threshold does not alert every minute). TLM frames come in advertisements of
their own, so they are matched to a beacon by the address its identity frames came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.core.const import ADDRESSES_PER_BEACON
from edge_agent.core.events import (
    BeaconEvent,
    BeaconFleetMessage,
    BeaconMessage,
    BeaconState,
    BeaconStatus,
    Envelopes,
    Message,
    utc,
)
from edge_agent.core.frames import EddystoneTlm
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import BeaconHealthSettings, BeaconSettings

LOW_BATTERY_HYSTERESIS_MV = 100


@dataclass(slots=True)
class _Beacon:
    beacon_id: str
    name: str
    last_seen: float | None = None
    last_receiver: str | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None
    missing: bool = False
    low_battery: bool = False


class BeaconFleet:
    def __init__(
        self,
        beacons: list[BeaconSettings],
        settings: BeaconHealthSettings,
        store_id: str,
        ids: EventIdFactory,
    ) -> None:
        self._settings = settings
        self._store_id = store_id
        self._ids = ids
        self._envelope = Envelopes(store_id, ids)
        self._beacons = {b.id: _Beacon(b.id, b.name) for b in beacons}
        self._by_address: dict[str, str] = {}
        self._watch_since: float | None = None
        self._next_summary: float | None = None

    def retune(self, beacons: list[BeaconSettings], settings: BeaconHealthSettings) -> None:
        """A new beacon list and thresholds; beacons that stay keep their state."""
        self._settings = settings
        kept = self._beacons
        self._beacons = {b.id: kept.get(b.id) or _Beacon(b.id, b.name) for b in beacons}
        for beacon in beacons:
            self._beacons[beacon.id].name = beacon.name
        self._by_address = {a: b for a, b in self._by_address.items() if b in self._beacons}

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: silence keeps its length, so no beacon goes
        missing (or comes back) because of the step."""
        for beacon in self._beacons.values():
            if beacon.last_seen is not None:
                beacon.last_seen += delta_s
        if self._watch_since is not None:
            self._watch_since += delta_s
        if self._next_summary is not None:
            self._next_summary += delta_s

    def missing(self) -> list[str]:
        return sorted(b.beacon_id for b in self._beacons.values() if b.missing)

    def __contains__(self, beacon_id: str) -> bool:
        return beacon_id in self._beacons

    def seen(self, beacon_id: str, address: str, receiver: str, ts: float) -> list[Message]:
        beacon = self._beacons[beacon_id]
        self._by_address.pop(address, None)  # re-inserted last: insertion order is age order
        self._by_address[address] = beacon_id
        if len(self._by_address) > ADDRESSES_PER_BEACON * len(self._beacons):
            del self._by_address[next(iter(self._by_address))]
        beacon.last_seen = ts if beacon.last_seen is None else max(beacon.last_seen, ts)
        beacon.last_receiver = receiver
        if beacon.missing:
            beacon.missing = False
            return [self._event(beacon, "returned", ts)]
        return []

    def telemetry(self, address: str, tlm: EddystoneTlm, ts: float) -> list[Message]:
        beacon_id = self._by_address.get(address)
        if beacon_id is None:
            return []
        beacon = self._beacons[beacon_id]
        beacon.battery_mv = tlm.battery_mv if tlm.battery_mv is not None else beacon.battery_mv
        beacon.temperature_c = tlm.temperature_c if tlm.temperature_c is not None else beacon.temperature_c
        if beacon.battery_mv is None:
            return []
        if not beacon.low_battery and beacon.battery_mv < self._settings.low_battery_mv:
            beacon.low_battery = True
            return [self._event(beacon, "low_battery", ts)]
        if (
            beacon.low_battery
            and beacon.battery_mv >= self._settings.low_battery_mv + LOW_BATTERY_HYSTERESIS_MV
        ):
            beacon.low_battery = False
        return []

    def tick(self, now: float) -> list[Message]:
        if not self._beacons:
            return []
        if self._watch_since is None:
            self._watch_since = now
            self._next_summary = now + self._settings.summary_interval_s
        messages: list[Message] = []
        for beacon in self._beacons.values():
            reference = beacon.last_seen if beacon.last_seen is not None else self._watch_since
            if not beacon.missing and now - reference > self._settings.missing_after_s:
                beacon.missing = True
                messages.append(self._event(beacon, "missing", now))
        assert self._next_summary is not None
        if now >= self._next_summary:
            messages.append(self.summary(now))
            while self._next_summary <= now:
                self._next_summary += self._settings.summary_interval_s
        return messages

    def summary(self, now: float) -> BeaconFleetMessage:
        statuses = [self._status(b) for b in self._beacons.values()]
        return BeaconFleetMessage(
            **self._envelope.at(now),
            present=sum(s.state == "present" for s in statuses),
            missing=sum(s.state == "missing" for s in statuses),
            low_battery=sum(b.low_battery for b in self._beacons.values()),
            beacons=statuses,
        )

    @staticmethod
    def _status(beacon: _Beacon) -> BeaconStatus:
        state: BeaconState = (
            "missing" if beacon.missing else ("never_seen" if beacon.last_seen is None else "present")
        )
        return BeaconStatus(
            beacon_id=beacon.beacon_id,
            name=beacon.name,
            state=state,
            last_seen=None if beacon.last_seen is None else utc(beacon.last_seen),
            last_receiver=beacon.last_receiver,
            battery_mv=beacon.battery_mv,
            temperature_c=beacon.temperature_c,
        )

    def _event(
        self, beacon: _Beacon, event: BeaconEvent, now: float, residuals: dict[str, float] | None = None
    ) -> BeaconMessage:
        return BeaconMessage(
            **self._envelope.at(now),
            event=event,
            beacon=self._status(beacon),
            residuals_db=residuals,
        )

    def calibration_event(
        self, beacon_id: str, event: BeaconEvent, now: float, residuals: dict[str, float]
    ) -> BeaconMessage | None:
        """A positioned beacon moved or is back in place, as calibration's residuals say."""
        beacon = self._beacons.get(beacon_id)
        return None if beacon is None else self._event(beacon, event, now, residuals)

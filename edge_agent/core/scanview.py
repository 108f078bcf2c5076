"""What ``edge-agent scan`` shows a technician: one row per device and receiver, kept current.

Pure bookkeeping (time from the sightings); the CLI renders it with rich. Addresses are shown
because a technician on site needs them to find a beacon; nothing here leaves the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edge_agent.core.frames import (
    AltBeacon,
    AppleOverflow,
    BeaconOnly,
    EddystoneEid,
    EddystoneEncryptedTlm,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    Frame,
    IBeacon,
    decode_sighting,
)
from edge_agent.core.rssi import distance_m
from edge_agent.core.settings import PresenceSettings
from edge_agent.core.sighting import Sighting

# Exponential smoothing of RSSI for the display: 0.3 follows a walk within a few packets
# without jumping with every multipath fade.
RSSI_SMOOTHING = 0.3
# Eddystone advertises its power at 0 m; the power at 1 m is about 41 dB lower (Eddystone spec).
EDDYSTONE_0M_TO_1M_DB = 41


@dataclass(slots=True)
class DeviceRow:
    receiver: str
    address: str
    kind: str = "other"
    identity: str = ""
    rssi: int = 0
    smoothed: float = 0.0
    distance_m: float | None = None
    last_seen: float = 0.0
    sightings: int = 0
    details: dict[str, str] = field(default_factory=dict)


class ScanView:
    """Distances use the presence model's log-distance exponent (``presence.path_loss_exponent``),
    so the scan view and zone choice agree on how far a device is."""

    def __init__(self, path_loss_exponent: float = PresenceSettings().path_loss_exponent) -> None:
        self.rows: dict[tuple[str, str], DeviceRow] = {}
        self._path_loss_exponent = path_loss_exponent

    def add(self, sighting: Sighting) -> None:
        key = (sighting.receiver, sighting.address)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = DeviceRow(
                sighting.receiver, sighting.address, smoothed=float(sighting.rssi)
            )
        row.rssi = sighting.rssi
        row.smoothed += RSSI_SMOOTHING * (sighting.rssi - row.smoothed)
        row.last_seen = sighting.ts
        row.sightings += 1
        measured_1m: int | None = None
        for frame in decode_sighting(sighting):
            measured_1m = _describe(row, frame) or measured_1m
        if measured_1m is not None:
            row.distance_m = round(distance_m(row.smoothed, measured_1m, self._path_loss_exponent), 1)

    def ordered(self) -> list[DeviceRow]:
        """Strongest first: the device in the technician's hand is at the top."""
        return sorted(self.rows.values(), key=lambda r: -r.smoothed)


def _describe(row: DeviceRow, frame: Frame) -> int | None:
    """Fill the row from one frame; return the frame's power at 1 m when it has one."""
    match frame:
        case IBeacon():
            row.kind, row.identity = "iBeacon", f"{frame.uuid} {frame.major}/{frame.minor}"
            return frame.measured_power
        case AltBeacon():
            row.kind, row.identity = "AltBeacon", frame.beacon_id.hex()
            return frame.reference_rssi
        case EddystoneUid():
            row.kind, row.identity = "Eddystone-UID", f"{frame.namespace.hex()}:{frame.instance.hex()}"
            return frame.tx_power - EDDYSTONE_0M_TO_1M_DB
        case EddystoneEid():
            row.kind, row.identity = "Eddystone-EID", f"token {frame.eid.hex()}"
            return frame.tx_power - EDDYSTONE_0M_TO_1M_DB
        case EddystoneUrl():
            row.details["url"] = frame.url
            return frame.tx_power - EDDYSTONE_0M_TO_1M_DB
        case AppleOverflow():
            # How a technician finds the app's gatt.overflow_bit: the bit its iPhones show,
            # numbered as gatt.overflow_bit is (Young's table, see core.frames).
            bits = [bit for bit in range(128) if frame.has_bit(bit)]
            row.kind, row.identity = "iOS background", "overflow bits " + ",".join(map(str, bits))
        case EddystoneTlm() | EddystoneEncryptedTlm() | BeaconOnly():
            _describe_beacon_data(row, frame)
    return None


def _describe_beacon_data(row: DeviceRow, frame: EddystoneTlm | EddystoneEncryptedTlm | BeaconOnly) -> None:
    """Frames that say how a beacon is, not who it is (they come between its identity frames)."""
    match frame:
        case EddystoneTlm():
            if frame.battery_mv is not None:
                row.details["battery"] = f"{frame.battery_mv} mV"
            if frame.temperature_c is not None:
                row.details["temp"] = f"{frame.temperature_c:.1f} °C"
            row.details["uptime"] = f"{frame.uptime_s / 3600:.1f} h"
        case EddystoneEncryptedTlm():
            row.details["tlm"] = "encrypted"
            if row.kind == "other":
                row.kind = "Eddystone-eTLM"
        case BeaconOnly():
            row.details["frame"] = f"0x{frame.frame_type:02x}"
            if row.kind == "other":
                row.kind, row.identity = "beacon", frame.reason

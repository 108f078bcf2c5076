"""``edge-agent scan --record`` against the fake BlueZ, then ``replay`` of what it recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import EddystoneTlm, IBeacon, decode_sighting
from edge_agent.core.scanview import ScanView
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import TraceProblem, read_trace
from tests.conftest import wait_for
from tests.fakebluez.fixture import FakeBluez, fake_bluez
from tests.helpers import app_sighting, customers_downlink

AIRLOCATE = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
TLM = bytes.fromhex("20000bb81780000003e800000e10")
NEARBY_INFO = bytes.fromhex("1005031c0d2f9a")  # an Apple continuity message
PHONE, BEACON = "5A:11:22:33:44:55", "C0:FF:EE:00:00:01"


@pytest.fixture
def bluez() -> Iterator[FakeBluez]:
    with fake_bluez() as handle:
        yield handle


def _record(bluez: FakeBluez, record: Path, *flags: str) -> None:
    """Scan the fake BlueZ for a few seconds while a beacon and an app phone advertise."""
    scan = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "scan", "--adapter", "hci0", "--duration", "6",
         "--throttle", "0", "--record", str(record), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(bluez.discovering, 15, "the scan to start discovery")
        bluez.add_advertiser(BEACON, rssi=-80, manufacturer={0x004C: AIRLOCATE})
        bluez.add_advertiser(PHONE, rssi=-80, manufacturer={0x004C: NEARBY_INFO})
        token = app_sighting("c1", time.time()).service_data
        for rssi in (-60, -58, -56):
            bluez.advertise(PHONE, rssi, service=token)
        bluez.advertise(BEACON, -50, service={EDDYSTONE_SERVICE_UUID: TLM})
        wait_for(lambda: record.exists() and "-50" in record.read_text(), 10, "the recording to catch up")
    finally:
        _, stderr = scan.communicate(timeout=30)
    assert scan.returncode == 0, stderr


def _replay(record: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "agent.toml"
    config.write_text(
        '[store]\nid = "s1"\n[[zones]]\nid = "e"\n[[receivers]]\nid = "hci0"\nzone = "e"\nadapter = "hci0"\n'
    )
    customers = tmp_path / "customers.jsonl"
    customers.write_bytes(customers_downlink(("c1", True, False)) + b"\n")
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "replay", str(record), "--config", str(config),
         "--downlink", f"customers={customers}", "--output", "-"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.ble
def test_recorded_scan_replays_to_the_same_sightings(bluez: FakeBluez, tmp_path: Path) -> None:
    record = tmp_path / "store.jsonl"
    _record(bluez, record, "--record-raw")

    recorded = [s for s in read_trace(record.read_text().splitlines()) if isinstance(s, Sighting)]
    assert not [p for p in read_trace(record.read_text().splitlines()) if isinstance(p, TraceProblem)]
    phone = [s for s in recorded if s.address == PHONE and s.service_data]
    assert [s.rssi for s in phone] == [-60, -58, -56]
    assert all(s.receiver == "hci0" for s in recorded)
    beacon = [s for s in recorded if s.address == BEACON][-1]
    assert IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59) in decode_sighting(beacon)
    assert EddystoneTlm(3000, 23.5, 1000, 360.0) in decode_sighting(beacon)

    replay = _replay(record, tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert f"replayed {len(recorded)} sightings" in replay.stderr
    assert '"customer_id":"c1","phase":"started"' in replay.stdout


@pytest.mark.ble
def test_a_default_recording_carries_no_phone_address_and_still_replays(
    bluez: FakeBluez, tmp_path: Path
) -> None:
    record = tmp_path / "store.jsonl"
    _record(bluez, record)
    text = record.read_text()
    assert PHONE not in text.upper()
    assert NEARBY_INFO.hex() not in text.lower()  # continuity payloads fingerprint a phone
    assert BEACON in text  # a technician finds a beacon by its address
    recorded = [s for s in read_trace(text.splitlines()) if isinstance(s, Sighting)]
    phone = [s for s in recorded if s.service_data and s.address != BEACON]
    assert [s.rssi for s in phone] == [-60, -58, -56]
    assert len({s.address for s in phone}) == 1  # one phone, one pseudonym
    replay = _replay(record, tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert '"customer_id":"c1","phase":"started"' in replay.stdout


def test_scan_view_smooths_rssi_estimates_distance_and_shows_battery() -> None:
    view = ScanView()
    beacon = {0x004C: AIRLOCATE}
    for ts, rssi in ((1.0, -59), (2.0, -69), (3.0, -69)):
        view.add(Sighting(ts, "entrance", BEACON, rssi, manufacturer_data=beacon))
    view.add(Sighting(4.0, "entrance", BEACON, -69, service_data={EDDYSTONE_SERVICE_UUID: TLM}))
    [row] = view.ordered()
    assert row.kind == "iBeacon"
    assert row.identity.endswith("1/2")
    assert -69 < row.smoothed < -59  # smoothed, not the raw last value
    assert row.distance_m is not None
    assert 1.0 < row.distance_m < 3.0  # ~8 dB below the 1 m power at path-loss exponent 2.5
    assert row.details["battery"] == "3000 mV"
    assert row.sightings == 4


def test_scan_needs_something_to_scan() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "scan", "--duration", "1"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "nothing to scan" in result.stderr


def test_scan_with_no_system_bus_exits_non_zero_and_says_why(tmp_path: Path) -> None:
    address = f"unix:path={tmp_path / 'no-such-bus'}"
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "scan", "--adapter", "hci0", "--duration", "4"],
        check=False, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address},
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        f"scanner hci0/hci0 never ran: no D-Bus system bus at {address} "
        "(is dbus running? is bluetoothd installed?)"
    ) in result.stderr
    assert "no scanner ran" in result.stderr


def test_scan_view_shows_the_overflow_bits_a_technician_needs_for_gatt() -> None:
    from edge_agent.core.frames import encode_apple_overflow

    view = ScanView()
    company, data = encode_apple_overflow([62, 120])
    view.add(Sighting(1.0, "entrance", PHONE, -60, manufacturer_data={company: data}))
    [row] = view.ordered()
    assert (row.kind, row.identity) == ("iOS background", "overflow bits 62,120")


def test_scan_view_shows_encrypted_tlm_and_beacon_only_frames() -> None:
    from edge_agent.core.const import EDDYSTONE_SERVICE_UUID

    view = ScanView()
    etlm = bytes.fromhex("2001") + bytes(16)
    view.add(Sighting(1.0, "entrance", "C2:00:00:00:00:01", -60, service_data={EDDYSTONE_SERVICE_UUID: etlm}))
    view.add(
        Sighting(1.0, "entrance", "C2:00:00:00:00:02", -70, service_data={EDDYSTONE_SERVICE_UUID: b"\x40"})
    )
    encrypted, other = view.ordered()
    assert (encrypted.kind, encrypted.details) == ("Eddystone-eTLM", {"tlm": "encrypted"})
    assert (other.kind, other.identity) == ("beacon", "unknown Eddystone frame type 0x40")

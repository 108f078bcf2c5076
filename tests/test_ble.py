"""The bleak scanner adapter against a fake BlueZ on a private D-Bus (real bleak, real dbus-daemon)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bleak.exc import BleakBluetoothNotAvailableError, BleakBluetoothNotAvailableReason, BleakDBusError
from dbusmock import BusType, PrivateDBus

from edge_agent.adapters.ble import BleRuntime, BleScanner
from edge_agent.adapters.bluez_errors import explain
from edge_agent.adapters.clock import SYSTEM_CLOCK
from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import EddystoneEid, IBeacon, decode_sighting, encode_apple_overflow
from edge_agent.core.settings import BleSettings, GattSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.service import Service
from edge_agent.daemon.statusview import TEXT_KEYS, status_lines
from tests.conftest import wait_for
from tests.fakebluez.fixture import FakeBluez, fake_bluez
from tests.helpers import app_sighting, customers_downlink

pytestmark = pytest.mark.ble

AIRLOCATE = bytes.fromhex("0215e2c56db5dffb48d2b060d0f5a71096e000010002c5")
EID_FRAME = bytes.fromhex("30ec0102030405060708")
PHONE = "5A:11:22:33:44:55"


@pytest.fixture
def bluez() -> Iterator[FakeBluez]:
    with fake_bluez() as handle:
        yield handle


def _scan(settings: BleSettings) -> tuple[BleRuntime, BleScanner, list[Sighting]]:
    sightings: list[Sighting] = []
    scanner = BleScanner("entrance", "hci0", sightings.append, settings, SYSTEM_CLOCK)
    runtime = BleRuntime([scanner])
    runtime.start()
    wait_for(lambda: scanner.health.running, 10, "the scan to start")
    return runtime, scanner, sightings


@pytest.mark.parametrize("mode", ["active", "passive"])
def test_sightings_carry_rssi_and_advertisement_data(bluez: FakeBluez, mode: str) -> None:
    runtime, _, sightings = _scan(BleSettings(throttle_s=0, mode=mode))
    try:
        # Passive scanning uses an advertisement monitor: no active discovery, no scan requests.
        assert bluez.discovering() is (mode == "active")
        bluez.add_advertiser(PHONE, rssi=-70, uuids=[EDDYSTONE_SERVICE_UUID])
        bluez.advertise(PHONE, -52, manufacturer={0x004C: AIRLOCATE})
        first = wait_for(lambda: [s for s in sightings if s.rssi == -52], 10, "the iBeacon advertisement")[0]
        assert first.receiver == "entrance"
        assert first.address == PHONE
        assert first.manufacturer_data == {0x004C: AIRLOCATE}
        assert decode_sighting(first) == [IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)]

        bluez.advertise(PHONE, -48, service={EDDYSTONE_SERVICE_UUID: EID_FRAME})
        eid = wait_for(
            lambda: [s for s in sightings if s.rssi == -48], 10, "the Eddystone-EID advertisement"
        )[0]
        assert eid.service_data[EDDYSTONE_SERVICE_UUID] == EID_FRAME
        assert EddystoneEid(-20, bytes.fromhex("0102030405060708")) in decode_sighting(eid)
    finally:
        runtime.stop()


def test_rssi_only_updates_are_throttled_but_new_payloads_always_pass(bluez: FakeBluez) -> None:
    runtime, scanner, sightings = _scan(BleSettings(throttle_s=60))
    try:
        bluez.add_advertiser(PHONE, rssi=-70, manufacturer={0x004C: AIRLOCATE})
        wait_for(lambda: sightings, 10, "the first advertisement")
        for rssi in range(-60, -40):
            bluez.advertise(PHONE, rssi)  # same payload, new RSSI: a storm with no news
        bluez.advertise(PHONE, -40, service={EDDYSTONE_SERVICE_UUID: EID_FRAME})
        wait_for(
            lambda: any(EDDYSTONE_SERVICE_UUID in s.service_data for s in sightings), 10, "the new payload"
        )
        wait_for(lambda: scanner.health.advertisements >= 21, 10, "every update to reach the scanner")
        assert len(sightings) == 2
    finally:
        runtime.stop()


def test_scanning_recovers_by_itself_when_the_adapter_disappears_and_returns(bluez: FakeBluez) -> None:
    settings = BleSettings(watchdog_s=0.5, restart_backoff_min_s=0.1, restart_backoff_max_s=0.4, throttle_s=0)
    runtime, scanner, sightings = _scan(settings)
    try:
        bluez.add_advertiser(PHONE, rssi=-70)
        bluez.advertise(PHONE, -61)
        wait_for(lambda: sightings, 10, "a sighting before the outage")

        bluez.remove_adapter()  # the USB dongle is pulled: bleak itself says nothing
        wait_for(lambda: scanner.health.watchdog_restarts >= 1, 10, "the watchdog to notice the silence")
        wait_for(lambda: scanner.health.errors >= 1, 10, "a failed restart while the adapter is gone")

        bluez.add_adapter()  # plugged back in
        bluez.add_advertiser(PHONE, rssi=-70)
        wait_for(lambda: scanner.health.running and scanner.health.starts >= 2, 15, "the scan to restart")
        before = len(sightings)
        bluez.advertise(PHONE, -44)
        wait_for(lambda: [s for s in sightings[before:] if s.rssi == -44], 10, "a sighting after the outage")
    finally:
        runtime.stop()


def test_passive_mode_falls_back_to_active_where_the_adapter_cannot_scan_passively() -> None:
    with fake_bluez(passive_capable=False) as bluez:
        runtime, scanner, sightings = _scan(BleSettings(mode="passive", throttle_s=0))
        try:
            assert scanner.health.mode == "active"
            assert scanner.health.errors == 1
            assert bluez.discovering()
            bluez.add_advertiser(PHONE, rssi=-70)
            bluez.advertise(PHONE, -53, manufacturer={0x004C: AIRLOCATE})
            wait_for(lambda: [s for s in sightings if s.rssi == -53], 10, "sightings in the fallback mode")
        finally:
            runtime.stop()


@pytest.mark.parametrize("error", ["org.bluez.Error.InProgress", "org.bluez.Error.NotReady"])
def test_bluez_refusing_to_scan_is_retried_with_backoff_and_counted(bluez: FakeBluez, error: str) -> None:
    bluez.fail_discovery(error)
    sightings: list[Sighting] = []
    settings = BleSettings(restart_backoff_min_s=0.05, restart_backoff_max_s=0.2, throttle_s=0)
    scanner = BleScanner("entrance", "hci0", sightings.append, settings, SYSTEM_CLOCK)
    runtime = BleRuntime([scanner])
    runtime.start()
    try:
        wait_for(lambda: scanner.health.errors >= 3, 10, "repeated refusals")
        assert not scanner.health.running
        assert error.rsplit(".", 1)[-1] in scanner.health.last_error
        bluez.restore_discovery()
        wait_for(lambda: scanner.health.running, 10, "the scan to start once BlueZ allows it")
        bluez.add_advertiser(PHONE, rssi=-70)
        bluez.advertise(PHONE, -57)
        wait_for(lambda: [s for s in sightings if s.rssi == -57], 10, "sightings after the refusals")
    finally:
        runtime.stop()


def test_daemon_turns_a_customers_advertisement_into_a_visit(bluez: FakeBluez, tmp_path: Path) -> None:
    config = config_from_mapping(
        {
            "store": {"id": "s1"},
            "zones": [{"id": "entrance"}],
            "receivers": [{"id": "entrance", "zone": "entrance", "adapter": "hci0"}],
            "mqtt": {"port": 9, "reconnect_min_s": 5, "reconnect_max_s": 5},  # no broker: events wait
            "storage": {"path": str(tmp_path / "agent.db"), "group_max_delay_s": 0.02},
        }
    )
    service = Service(config)
    service.pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), time.time()
    )
    service.start()
    try:
        wait_for(
            lambda: service.ble is not None and service.ble.scanners[0].health.running, 10, "the scanner"
        )
        token_frame = app_sighting("c1", time.time()).service_data
        bluez.add_advertiser(PHONE, rssi=-70)
        bluez.advertise(PHONE, -55, service=token_frame)
        visits = wait_for(
            lambda: [p for p in service.pipeline.outbox.peek_payloads() if p["schema"] == "visit.v1"],
            10, "a visit in the outbox",
        )  # fmt: skip
        assert visits[0]["customer_id"] == "c1"
        assert visits[0]["entry_receiver"] == "entrance"
    finally:
        service.stop(5)


IPHONE, BROKEN = "6A:00:00:00:00:01", "6A:00:00:00:00:02"
APP_BIT = 62
GATT = GattSettings(overflow_bit=APP_BIT, retry_min_s=60, retry_max_s=60, connect_timeout_s=5)


def test_token_is_read_over_gatt_from_a_backgrounded_iphone(bluez: FakeBluez) -> None:
    sightings: list[Sighting] = []
    scanner = BleScanner("entrance", "hci0", sightings.append, BleSettings(throttle_s=0), SYSTEM_CLOCK, GATT)
    runtime = BleRuntime([scanner])
    runtime.start()
    try:
        wait_for(lambda: scanner.health.running, 10, "the scan to start")
        company, overflow = encode_apple_overflow([APP_BIT])
        token = decode_sighting(app_sighting("c1", time.time()))[0].eid
        bluez.add_advertiser(IPHONE, rssi=-70, manufacturer={company: overflow})
        bluez.add_characteristic(IPHONE, GATT.service_uuid, GATT.token_uuid, token)
        bluez.advertise(IPHONE, -61, manufacturer={company: overflow})

        assert scanner.tokens is not None
        wait_for(lambda: scanner.tokens.health.reads == 1, 15, "the token read over GATT")
        bluez.advertise(IPHONE, -59, manufacturer={company: overflow})
        with_token = wait_for(
            lambda: [s for s in sightings if EDDYSTONE_SERVICE_UUID in s.service_data],
            10,
            "a sighting with the token",
        )[0]
        assert EddystoneEid(0, token) in decode_sighting(with_token)
        assert with_token.rssi == -59

        # A phone whose read fails: counted, backed off, and the scan goes on.
        bluez.add_advertiser(BROKEN, rssi=-70, manufacturer={company: overflow})  # no GATT service
        bluez.advertise(BROKEN, -62, manufacturer={company: overflow})
        wait_for(lambda: scanner.tokens.health.failures == 1, 15, "the failed read")
        for rssi in (-63, -64):
            bluez.advertise(BROKEN, rssi, manufacturer={company: overflow})
        wait_for(
            lambda: [s for s in sightings if s.address == BROKEN and s.rssi == -64], 10, "scanning after it"
        )
        assert scanner.tokens.health.failures == 1  # backing off: no second attempt yet
        assert scanner.tokens.health.most_connected <= GATT.max_connections
    finally:
        runtime.stop()


NO_BUS_HINT = "(is dbus running? is bluetoothd installed?)"
FAST_RETRIES = BleSettings(restart_backoff_min_s=0.05, restart_backoff_max_s=0.2, throttle_s=0)


def _failing(adapter: str = "hci0") -> tuple[BleRuntime, BleScanner]:
    scanner = BleScanner("entrance", adapter, lambda s: None, FAST_RETRIES, SYSTEM_CLOCK)
    runtime = BleRuntime([scanner])
    runtime.start()
    return runtime, scanner


def _ble_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "edge_agent.adapters.ble" and r.levelno == logging.WARNING
    ]


def test_without_a_system_bus_the_scanner_names_it_once_not_at_every_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    address = f"unix:path={tmp_path / 'no-such-bus'}"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.ble")
    runtime, scanner = _failing()
    try:
        wait_for(lambda: scanner.health.errors >= 5, 10, "repeated failed starts")
        assert not scanner.health.running
        assert scanner.health.reason == f"no D-Bus system bus at {address} {NO_BUS_HINT}"
        assert _ble_warnings(caplog) == [
            f"scanner start failed receiver=entrance adapter=hci0: no D-Bus system bus at {address} "
            f"{NO_BUS_HINT}; retrying"
        ]
        # The reason changes (dbus is started, bluetoothd is not): said at once.
        with PrivateDBus(BusType.SYSTEM):
            wait_for(lambda: "BlueZ not running" in scanner.health.reason, 10, "the new reason")
            wait_for(lambda: len(_ble_warnings(caplog)) == 2, 10, "the new reason in the log")
            assert "org.bluez not on the bus" in _ble_warnings(caplog)[1]
    finally:
        runtime.stop()


def test_a_bus_without_bluez_is_named_as_such(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.ble")
    with PrivateDBus(BusType.SYSTEM):
        runtime, scanner = _failing()
        try:
            wait_for(lambda: scanner.health.errors >= 3, 10, "repeated failed starts")
            assert scanner.health.reason == (
                "BlueZ not running (org.bluez not on the bus: is bluetoothd installed and started?)"
            )
            assert len(_ble_warnings(caplog)) == 1
        finally:
            runtime.stop()


def test_a_missing_adapter_is_named_and_the_reason_goes_once_it_scans(bluez: FakeBluez) -> None:
    runtime, scanner = _failing("hci1")
    try:
        wait_for(lambda: scanner.health.errors >= 2, 10, "failed starts on the missing adapter")
        assert scanner.health.reason.startswith("adapter hci1 not found")
        bluez.add_adapter("hci1")
        wait_for(lambda: scanner.health.running, 10, "the scan once the adapter is there")
        assert scanner.health.reason == ""
    finally:
        runtime.stop()


def test_status_v1_and_the_status_line_carry_why_the_scanner_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = f"unix:path={tmp_path / 'no-such-bus'}"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
    config = config_from_mapping(
        {
            "store": {"id": "s1"},
            "zones": [{"id": "entrance"}],
            "receivers": [{"id": "entrance", "zone": "entrance", "adapter": "hci0"}],
            "mqtt": {"port": 9, "reconnect_min_s": 5, "reconnect_max_s": 5},  # no broker needed
            "storage": {"path": str(tmp_path / "agent.db")},
            "ble": {"restart_backoff_min_s": 0.05, "restart_backoff_max_s": 0.2},
        }
    )
    service = Service(config)
    service.start()
    try:
        assert service.ble is not None
        health = service.ble.scanners[0].health
        wait_for(lambda: health.errors >= 2, 10, "failed starts")
        message = service.status_message("online")
        assert message.scanners is not None
        assert message.scanners[0].reason == f"no D-Bus system bus at {address} {NO_BUS_HINT}"
        wire = message.model_dump(mode="json")
        assert wire["scanners"][0]["reason"] == message.scanners[0].reason
        line = status_lines({**dict.fromkeys(TEXT_KEYS), "scanners": wire["scanners"]})[-1]
        assert line.startswith("scanner entrance/hci0: DOWN, mode active, 0 restarts, ")
        assert line.endswith(f"errors: no D-Bus system bus at {address} {NO_BUS_HINT}")
    finally:
        service.stop(5)


def test_a_malformed_bus_address_is_named_and_does_not_end_the_ble_runtime(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "garbage")
    runtime, scanner = _failing()
    try:
        wait_for(lambda: scanner.health.errors >= 2, 10, "retries, not a dead runtime")
        assert (
            scanner.health.reason
            == "D-Bus system bus address 'garbage' is not valid (DBUS_SYSTEM_BUS_ADDRESS)"
        )
    finally:
        runtime.stop()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "no D-Bus system bus at unix:path=/x "),
        (
            PermissionError(13, "Permission denied"),
            "not allowed to open the D-Bus system bus at unix:path=/x",
        ),
        (EOFError(), "closed the connection"),
        (
            BleakDBusError("org.freedesktop.DBus.Error.AccessDenied", []),
            "D-Bus policy denies this user BlueZ",
        ),
        (BleakDBusError("org.bluez.Error.NotReady", []), "adapter hci0 not ready (powered off"),
        (BleakDBusError("org.bluez.Error.InProgress", []), "adapter hci0 busy"),
        (
            BleakDBusError("org.bluez.Error.Failed", ["No such adapter"]),
            "BlueZ refused: org.bluez.Error.Failed (No such adapter)",
        ),
        (
            BleakBluetoothNotAvailableError("x", BleakBluetoothNotAvailableReason.POWERED_OFF),
            "Bluetooth not available: the adapter is powered off",
        ),
        (ValueError("odd"), "ValueError: odd"),
    ],
)
def test_each_start_failure_is_explained_in_a_technicians_words(
    monkeypatch: pytest.MonkeyPatch, error: BaseException, reason: str
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/x")
    assert reason in explain(error, "hci0")

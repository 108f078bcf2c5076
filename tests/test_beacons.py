"""Beacon fleet health: missing, returned, low battery, and the periodic summary."""

from __future__ import annotations

from pathlib import Path

from edge_agent.core.beacons import BeaconFleet
from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.events import BeaconFleetMessage, BeaconMessage
from edge_agent.core.frames import EddystoneTlm, IBeacon, encode_eddystone_tlm, encode_ibeacon
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import BeaconHealthSettings, BeaconSettings
from edge_agent.core.sighting import Sighting
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.storage.database import Database
from tests.conftest import make_config

DOOR = IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 1, -59)
SHELF = IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)
SETTINGS = BeaconHealthSettings(missing_after_s=600, low_battery_mv=2500, summary_interval_s=3600)


def _fleet() -> BeaconFleet:
    beacons = [
        BeaconSettings(id=DOOR.identifier, name="door"),
        BeaconSettings(id=SHELF.identifier, name="shelf"),
    ]
    return BeaconFleet(beacons, SETTINGS, "s1", EventIdFactory.seeded("t"))


def _states(messages: list) -> list[tuple[str, str]]:
    return [(m.beacon.name, m.event) for m in messages if isinstance(m, BeaconMessage)]


def test_a_silent_beacon_goes_missing_once_and_returns() -> None:
    fleet = _fleet()
    fleet.tick(0.0)
    fleet.seen(DOOR.identifier, "C0:00:00:00:00:01", "entrance", 10.0)
    assert _states(fleet.tick(600.0)) == []
    assert _states(fleet.tick(600.5)) == [("shelf", "missing")]  # never heard since the agent started
    assert _states(fleet.tick(610.5)) == [("door", "missing")]  # 600.5 s after it was last heard
    assert _states(fleet.tick(900.0)) == []  # reported once, not every tick
    [returned] = fleet.seen(DOOR.identifier, "C0:00:00:00:00:01", "entrance", 901.0)
    assert returned.event == "returned"
    assert returned.beacon.state == "present"
    assert returned.beacon.last_receiver == "entrance"


def test_low_battery_alerts_once_with_hysteresis() -> None:
    fleet = _fleet()
    fleet.seen(DOOR.identifier, "C0:00:00:00:00:01", "entrance", 0.0)

    def tlm(mv: int) -> list:
        return fleet.telemetry("C0:00:00:00:00:01", EddystoneTlm(mv, 21.5, 0, 0.0), 1.0)

    assert _states(tlm(2600)) == []
    assert _states(tlm(2450)) == [("door", "low_battery")]
    assert _states(tlm(2440)) == []
    assert _states(tlm(2550)) == []  # above the threshold but inside the 100 mV hysteresis: still low
    assert _states(tlm(2610)) == []  # recovered
    assert _states(tlm(2400)) == [("door", "low_battery")]
    assert (
        fleet.telemetry("AA:AA:AA:AA:AA:AA", EddystoneTlm(2000, None, 0, 0.0), 1.0) == []
    )  # unknown address


def test_fleet_summary_every_interval_lists_every_beacon() -> None:
    fleet = _fleet()
    assert not [m for m in fleet.tick(0.0) if isinstance(m, BeaconFleetMessage)]
    fleet.seen(DOOR.identifier, "C0:00:00:00:00:01", "entrance", 3000.0)
    fleet.telemetry("C0:00:00:00:00:01", EddystoneTlm(2900, 19.0, 5, 10.0), 3000.0)
    [summary] = [m for m in fleet.tick(3600.0) if isinstance(m, BeaconFleetMessage)]
    assert summary.present == 1
    assert summary.missing == 1
    by_name = {b.name: b for b in summary.beacons}
    assert by_name["door"].battery_mv == 2900
    assert by_name["door"].temperature_c == 19.0
    assert by_name["shelf"].state == "missing"
    assert not [m for m in fleet.tick(3700.0) if isinstance(m, BeaconFleetMessage)]


def test_pipeline_reports_beacon_health_and_never_counts_beacons_as_visitors(tmp_path: Path) -> None:
    config = make_config(
        tmp_path, beacon_health={"missing_after_s": 60, "summary_interval_s": 3600}
    ).model_copy(update={"beacons": [BeaconSettings(id=DOOR.identifier, name="door")]})
    pipeline = Pipeline(config, Database(config.storage.path), EventIdFactory.seeded("t"))
    company, data = encode_ibeacon(DOOR)
    address = "C0:00:00:00:00:01"
    pipeline.tick(0.0)
    pipeline.process([Sighting(1.0, "entrance", address, -50, manufacturer_data={company: data})])
    tlm = encode_eddystone_tlm(EddystoneTlm(2300, 20.0, 100, 50.0))
    pipeline.process([Sighting(2.0, "entrance", address, -50, service_data={EDDYSTONE_SERVICE_UUID: tlm})])
    pipeline.tick(100.0)
    events = [p for p in pipeline.outbox.peek_payloads() if p["schema"] == "beacon.v1"]
    assert [(e["event"], e["beacon"]["battery_mv"]) for e in events] == [
        ("low_battery", 2300),
        ("missing", 2300),
    ]
    assert pipeline.outbox.due(10)[0].topic.endswith("/events/beacon")
    assert pipeline.core.open_visits == 0

"""Remote receivers: ESPresense and generic sightings over MQTT, malformed ones counted and dropped.

The ESPresense payload shape (mac, id, name, rssi@1m, rssi, rxAdj, rssiVar, distance, var, int)
is the one ESPresense 4.x publishes on espresense/devices/{id}/{room}; its iBeacon ids read
"iBeacon:{uuid}-{major}-{minor}".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.adapters.remote import RemoteReceivers
from edge_agent.core.frames import IBeacon, decode_sighting
from edge_agent.core.receiver_formats import RemoteRejected, parse_espresense, parse_generic
from edge_agent.core.settings import RemoteSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.topics import Topics
from edge_agent.core.trace import format_trace_line
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto, Subscriber, make_config, wait_for
from tests.fakes import ManualClock
from tests.helpers import app_sighting, customers_downlink

RECEIVERS = frozenset({"aisle-1", "entrance"})
PHONE = {
    "mac": "d83addb1ee01", "id": "apple:1005:9-26", "name": "", "rssi@1m": -65, "rssi": -71.6,
    "rxAdj": 0, "rssiVar": 2.1, "distance": 2.23, "var": 0.12, "int": 1010,
}  # fmt: skip
BEACON = {
    "mac": "c0ffee000001",
    "id": "iBeacon:e2c56db5-dffb-48d2-b060-d0f5a71096e0-1-2",
    "rssi@1m": -59,
    "rssi": -64,
}


def test_espresense_phone_becomes_an_address_only_sighting() -> None:
    sighting = parse_espresense("aisle-1", json.dumps(PHONE).encode(), 100.0, RECEIVERS)
    assert sighting == Sighting(100.0, "aisle-1", "D8:3A:DD:B1:EE:01", -72)


def test_espresense_ibeacon_id_becomes_an_ibeacon_frame_again() -> None:
    sighting = parse_espresense("entrance", json.dumps(BEACON).encode(), 100.0, RECEIVERS)
    assert isinstance(sighting, Sighting)
    assert decode_sighting(sighting) == [IBeacon("e2c56db5-dffb-48d2-b060-d0f5a71096e0", 1, 2, -59)]


@pytest.mark.parametrize(
    ("room", "payload", "reason"),
    [
        ("kitchen", json.dumps(PHONE).encode(), "unknown receiver 'kitchen'"),
        ("aisle-1", b"{nope", "payload is not JSON"),
        ("aisle-1", b"[]", "payload is not a JSON object"),
        ("aisle-1", json.dumps({**PHONE, "rssi": "loud"}).encode(), "rssi missing or out of range"),
        ("aisle-1", json.dumps({**PHONE, "rssi": True}).encode(), "rssi missing or out of range"),
        ("aisle-1", json.dumps({"rssi": -50}).encode(), "id missing"),
        ("entrance", json.dumps({**BEACON, "id": BEACON["id"][:-1] + "99999"}).encode(), "out of range"),
    ],
)
def test_bad_espresense_messages_are_rejected_with_a_reason(room: str, payload: bytes, reason: str) -> None:
    result = parse_espresense(room, payload, 0.0, RECEIVERS)
    assert isinstance(result, RemoteRejected)
    assert reason in result.reason


def test_generic_message_is_a_trace_line_or_an_array_and_the_topic_names_the_receiver() -> None:
    line = json.loads(format_trace_line(app_sighting("c1", 1000.0, receiver="spoofed")))
    [one] = parse_generic("aisle-1", json.dumps(line).encode(), RECEIVERS)
    assert one.receiver == "aisle-1"
    assert one.service_data  # the raw advertisement survives: tokens resolve from remote nodes
    assert len(parse_generic("aisle-1", json.dumps([line, line]).encode(), RECEIVERS)) == 2
    rejected = parse_generic("aisle-1", json.dumps([line, {"ts": 1}]).encode(), RECEIVERS)
    assert isinstance(rejected, RemoteRejected)
    assert rejected.reason.startswith("item 1:")
    assert isinstance(parse_generic("roof", json.dumps(line).encode(), RECEIVERS), RemoteRejected)


@given(st.binary(max_size=300))
def test_random_bytes_never_raise(payload: bytes) -> None:
    assert isinstance(parse_espresense("aisle-1", payload, 0.0, RECEIVERS), Sighting | RemoteRejected)
    assert isinstance(parse_generic("aisle-1", payload, RECEIVERS), list | RemoteRejected)


ESPRESENSE_VALUES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=60)


@given(st.dictionaries(st.sampled_from(["mac", "id", "rssi", "rssi@1m", "name"]), ESPRESENSE_VALUES))
def test_random_espresense_shaped_objects_never_raise(doc: dict) -> None:
    result = parse_espresense("aisle-1", json.dumps(doc).encode(), 0.0, RECEIVERS)
    assert isinstance(result, Sighting | RemoteRejected)


LEVEL = st.text(st.characters(blacklist_characters="/#+", blacklist_categories=("Cs",)), max_size=20)


@given(st.sampled_from(["espresense", "site/esp"]), LEVEL, LEVEL)
def test_an_espresense_topic_names_its_room(prefix: str, device: str, room: str) -> None:
    assert Topics.espresense_room(f"{prefix}/devices/{device}/{room}", prefix) == room


@given(st.text(max_size=60))
def test_a_topic_outside_the_espresense_tree_names_no_room(topic: str) -> None:
    if not topic.startswith("espresense/devices/"):
        assert Topics.espresense_room(topic, "espresense") is None


def test_the_espresense_filter_matches_device_and_room() -> None:
    assert Topics.espresense("site/esp") == "site/esp/devices/+/+"


def test_remote_receivers_stamp_espresense_sightings_with_the_wall_clock_and_route_by_topic() -> None:
    time = ManualClock(wall=1234.5)
    accepted: list[Sighting] = []
    remote = RemoteReceivers(
        RemoteSettings(espresense=True), Topics("retail/v1", "s1"), ["entrance"], accepted.append, time.clock
    )
    assert remote.topic_filters == ("retail/v1/stores/s1/sightings/+", "espresense/devices/+/+")
    remote.handle("espresense/devices/apple:1005:9-26/entrance", json.dumps(PHONE).encode())
    remote.handle("espresense/devices/x/kitchen", json.dumps(PHONE).encode())
    remote.handle("elsewhere/devices/x/entrance", json.dumps(PHONE).encode())
    line = format_trace_line(app_sighting("c1", 99.0, receiver="spoofed"))
    remote.handle("retail/v1/stores/s1/sightings/entrance", line.encode())
    assert [(s.ts, s.receiver) for s in accepted] == [(1234.5, "entrance"), (99.0, "entrance")]
    assert remote.counters == {
        "accepted": 2, "rejected": 2, "rejected: unknown": 1, "rejected: unexpected": 1,
    }  # fmt: skip


@pytest.mark.mqtt
def test_remote_receivers_feed_the_daemon_and_garbage_is_counted(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto)
    config = make_config(tmp_path, mosquitto, remote={"espresense": True})
    service = Service(config)
    service.pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), time.time()
    )
    service.start()
    try:
        assert service.link.wait_connected(10)
        for _ in range(10):
            hq.publish("espresense/devices/x/entrance", b"{garbage")
        hq.publish("espresense/devices/x/kitchen", json.dumps(PHONE).encode())
        hq.publish("espresense/devices/apple:1005:9-26/entrance", json.dumps(PHONE).encode())
        wait_for(lambda: service.pipeline.core.open_visits == 1, 10, "the ESPresense phone's visit")

        line = format_trace_line(app_sighting("c1", time.time()))
        hq.publish("retail/v1/stores/s1/sightings/counter", line.encode())
        wait_for(lambda: hq.on("/events/visit"), 10, "the customer's visit from a generic receiver")
        assert hq.on("/events/visit")[0]["entry_receiver"] == "counter"
        assert service.remote.counters["rejected"] == 11
        assert service.remote.counters["accepted"] == 2
    finally:
        service.stop(5)

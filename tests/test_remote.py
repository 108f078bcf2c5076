"""Remote receivers: ESPresense and generic sightings over MQTT, malformed ones counted and dropped.

The ESPresense payload shape (mac, id, name, rssi@1m, rssi, rxAdj, rssiVar, distance, var, int)
is the one ESPresense 4.x publishes on espresense/devices/{id}/{room}; its iBeacon ids read
"iBeacon:{uuid}-{major}-{minor}".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.adapters.remote import MAX_UNKNOWN_RECEIVERS, RemoteReceivers
from edge_agent.core.events import RemoteStatus
from edge_agent.core.frames import IBeacon, decode_sighting
from edge_agent.core.receiver_formats import RemoteRejected, parse_espresense, parse_generic
from edge_agent.core.repeats import REPEAT_INTERVAL_S
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
    line = format_trace_line(app_sighting("c1", 1230.0, receiver="spoofed"))
    remote.handle("retail/v1/stores/s1/sightings/entrance", line.encode())
    assert [(s.ts, s.receiver) for s in accepted] == [(1234.5, "entrance"), (1230.0, "entrance")]
    assert remote.status() == RemoteStatus(
        accepted=2, rejected={"unknown_receiver": 1, "unexpected_topic": 1}, unknown_receivers={"kitchen": 1}
    )


GENERIC = "retail/v1/stores/s1/sightings/"


def _remote(clock: ManualClock, accepted: list[Sighting] | None = None) -> RemoteReceivers:
    sink = accepted if accepted is not None else []
    return RemoteReceivers(
        RemoteSettings(espresense=True), Topics("retail/v1", "s1"), ["entrance", "counter"], sink.append,
        clock.clock,
    )  # fmt: skip


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_rejected_messages_are_counted_by_reason_and_warned_about_without_their_payload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    remote = _remote(clock)
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.remote")
    no_ts = json.loads(format_trace_line(app_sighting("c1", clock.wall)))
    del no_ts["ts"]
    for _ in range(3):
        remote.handle(GENERIC + "entrance", json.dumps(no_ts).encode())
    remote.handle(GENERIC + "counter", b"\x00garbage 5A:00:00:00:00:01")
    remote.handle(
        "espresense/devices/apple:1005:9-26/counter", json.dumps({**PHONE, "rssi": "loud"}).encode()
    )
    assert remote.status() == RemoteStatus(
        accepted=0, rejected={"invalid": 4, "not_json": 1}, unknown_receivers={}
    )
    warnings = _warnings(caplog)
    assert warnings == [
        "remote message from receiver 'entrance' rejected (invalid): item 0: ts: Field required",
        "remote message from receiver 'counter' rejected (not_json): payload is not JSON",
        "remote message from receiver 'counter' rejected (invalid): rssi missing or out of range",
    ]
    logged = " ".join(warnings)
    assert "5A:00" not in logged
    assert "D8:3A" not in logged.upper()
    assert "apple:1005" not in logged

    clock.advance(REPEAT_INTERVAL_S)  # a few minutes on: the same fault is said again, with its count
    remote.handle(GENERIC + "entrance", json.dumps(no_ts).encode())
    assert _warnings(caplog)[-1].endswith("item 0: ts: Field required (2 more since the last warning)")


def test_each_unknown_receiver_is_warned_about_at_once_then_every_few_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    remote = _remote(clock)
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.remote")
    line = format_trace_line(app_sighting("c1", clock.wall)).encode()
    for _ in range(5):
        remote.handle(GENERIC + "kitchen", line)
        remote.handle("espresense/devices/x/roof", json.dumps(PHONE).encode())
    assert remote.status().unknown_receivers == {"kitchen": 5, "roof": 5}
    assert remote.status().rejected == {"unknown_receiver": 10}
    assert _warnings(caplog) == [
        "remote receiver 'kitchen' is not in the configuration: its sightings are dropped "
        "(configured: counter, entrance)",
        "remote receiver 'roof' is not in the configuration: its sightings are dropped "
        "(configured: counter, entrance)",
    ]
    clock.advance(REPEAT_INTERVAL_S - 1)
    remote.handle(GENERIC + "kitchen", line)
    assert len(_warnings(caplog)) == 2
    clock.advance(1)
    remote.handle(GENERIC + "kitchen", line)
    assert _warnings(caplog)[-1].endswith("(5 more since the last warning)")


def test_unknown_receiver_ids_from_the_network_are_bounded_in_counters_and_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()
    remote = _remote(clock)
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.remote")
    for n in range(200):
        remote.handle(f"{GENERIC}stranger-{n}-{'x' * 100}", b"{}")
    status = remote.status()
    assert status.rejected == {"unknown_receiver": 200}
    assert len(status.unknown_receivers) == MAX_UNKNOWN_RECEIVERS
    assert all(len(receiver) <= 64 for receiver in status.unknown_receivers)
    assert len(_warnings(caplog)) == MAX_UNKNOWN_RECEIVERS + 1  # one each, then one for the rest


@pytest.mark.parametrize("offset", [3600.0, -3600.0, 30.5, -31.0])
def test_a_sighting_dated_far_from_the_local_clock_is_rejected_counted_and_warned(
    caplog: pytest.LogCaptureFixture, offset: float
) -> None:
    clock = ManualClock()
    accepted: list[Sighting] = []
    remote = _remote(clock, accepted)
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.remote")
    good = json.loads(format_trace_line(app_sighting("c1", clock.wall - 1)))
    skewed = json.loads(format_trace_line(app_sighting("c1", clock.wall + offset)))
    for _ in range(3):
        remote.handle(GENERIC + "entrance", json.dumps([good, skewed]).encode())  # one clock, one verdict
    assert accepted == []
    assert remote.status().rejected == {"clock_skew": 3}
    assert _warnings(caplog) == [
        f"remote receiver 'entrance' clock is {offset:+.1f} s off the local clock (limit "
        "remote.max_clock_skew_s = 30 s): its sightings are dropped until its clock is synced (NTP/SNTP)"
    ]
    remote.handle(GENERIC + "entrance", json.dumps(good).encode())
    assert len(accepted) == 1


@given(offset=st.floats(-7200, 7200, allow_nan=False), skew=st.sampled_from([1.0, 30.0, 600.0]))
def test_a_generic_sighting_is_accepted_exactly_when_within_the_allowed_skew(
    offset: float, skew: float
) -> None:
    clock = ManualClock()
    accepted: list[Sighting] = []
    remote = RemoteReceivers(
        RemoteSettings(max_clock_skew_s=skew), Topics("retail/v1", "s1"), ["entrance"], accepted.append,
        clock.clock,
    )  # fmt: skip
    ts = clock.wall + offset
    remote.handle(GENERIC + "entrance", format_trace_line(app_sighting("c1", ts)).encode())
    within = abs(ts - clock.wall) <= skew
    assert len(accepted) == (1 if within else 0)
    assert remote.status().rejected == ({} if within else {"clock_skew": 1})


TOPIC_LEVEL = st.text(st.characters(blacklist_characters="/#+", blacklist_categories=("Cs",)), max_size=80)


@given(
    st.lists(
        st.tuples(
            st.sampled_from([GENERIC, "espresense/devices/x/", "elsewhere/"]),
            st.sampled_from(["entrance", "counter"]) | TOPIC_LEVEL,
            st.binary(max_size=200)
            | st.just(format_trace_line(app_sighting("c1", 1_700_000_000.0)).encode()),
        ),
        max_size=20,
    )
)
def test_any_message_from_the_network_is_accepted_or_counted_once_and_never_raises(
    messages: list[tuple[str, str, bytes]],
) -> None:
    clock = ManualClock()
    accepted: list[Sighting] = []
    remote = _remote(clock, accepted)
    rejected = 0
    for base, receiver, payload in messages:
        before = len(accepted)
        remote.handle(base + receiver, payload)
        now_rejected = sum(remote.status().rejected.values())
        # each message: rejected once, or its sightings accepted; never both
        assert now_rejected - rejected in (0, 1)
        assert now_rejected == rejected or len(accepted) == before
        rejected = now_rejected
    status = remote.status()
    assert status.accepted == len(accepted)
    topic_ids = {receiver[:64] for _, receiver, _ in messages}
    assert set(status.unknown_receivers) <= topic_ids - {"entrance", "counter"}
    assert sum(status.unknown_receivers.values()) <= status.rejected.get("unknown_receiver", 0)


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
        status = service.remote.status()
        assert sum(status.rejected.values()) == 11
        assert status.accepted == 2
    finally:
        service.stop(5)


@pytest.mark.mqtt
def test_the_daemon_drops_remote_sightings_from_a_wrong_clock_and_says_so_in_status_v1(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto)
    config = make_config(tmp_path, mosquitto, scheduler={"tick_interval_s": 0.1, "heartbeat_interval_s": 0.3})
    service = Service(config)
    service.pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), time.time()
    )
    service.start()
    try:
        assert service.link.wait_connected(10)
        ahead = format_trace_line(app_sighting("c1", time.time() + 3600))  # would stay open all day
        hq.publish("retail/v1/stores/s1/sightings/entrance", ahead.encode())
        hq.publish("retail/v1/stores/s1/sightings/kitchen", ahead.encode())
        hq.publish("retail/v1/stores/s1/sightings/entrance", b"{garbage")
        beat = wait_for(
            lambda: [s for s in hq.on("/status") if "not_json" in str(s.get("remote"))],
            10, "a heartbeat with the remote counters",
        )[-1]  # fmt: skip
        assert beat["remote"] == {
            "accepted": 0,
            "rejected": {"clock_skew": 1, "unknown_receiver": 1, "not_json": 1},
            "unknown_receivers": {"kitchen": 1},
        }
        assert service.pipeline.core.open_visits == 0

        hq.publish(
            "retail/v1/stores/s1/sightings/entrance",
            format_trace_line(app_sighting("c1", time.time())).encode(),
        )
        wait_for(lambda: service.pipeline.core.open_visits == 1, 10, "the visit from a synced clock")
    finally:
        service.stop(5)


@pytest.mark.parametrize("offset", [3600.0, -3600.0])
def test_a_receiver_whose_clock_is_off_by_a_constant_is_re_dated_once_its_messages_agree(
    caplog: pytest.LogCaptureFixture, offset: float
) -> None:
    """An hour off: the first ``correct_clock_after`` messages are dropped (as before), then its
    sightings come through dated by the local clock, a flush of old ones is still dropped, and a
    node whose clock is right again is taken as it is."""
    clock = ManualClock()
    accepted: list[Sighting] = []
    remote = _remote(clock, accepted)
    caplog.set_level(logging.WARNING, logger="edge_agent.adapters.remote")
    for second in range(8):
        delay = 0.3 if second % 2 else 0.05  # delivery delays vary; the smallest tells the offset
        line = format_trace_line(app_sighting("c1", clock.wall - delay + offset))
        remote.handle(GENERIC + "entrance", line.encode())
        clock.advance(1)
    assert remote.status().rejected == {"clock_skew": 4}
    assert len(accepted) == 4
    assert all(abs(s.ts - (clock.wall - 8 + 4 + i)) < 0.5 for i, s in enumerate(accepted))
    status = remote.status().clock_offsets
    assert status is not None
    assert abs(status["entrance"] - offset) < 0.1
    assert f"remote receiver 'entrance' clock is {offset:+.1f} s off the local clock" in _warnings(caplog)[-1]
    flushed = format_trace_line(app_sighting("c1", clock.wall - 120 + offset))  # buffered 2 min ago
    remote.handle(GENERIC + "entrance", flushed.encode())
    assert len(accepted) == 4
    remote.handle(GENERIC + "entrance", format_trace_line(app_sighting("c1", clock.wall)).encode())
    assert len(accepted) == 5
    assert remote.status().clock_offsets is None


@given(st.lists(st.tuples(st.floats(-1e9, 1e9, allow_nan=False), st.floats(0, 600)), min_size=1, max_size=40))
def test_whatever_a_receiver_claims_its_accepted_sightings_are_dated_within_the_skew_of_arrival(
    messages: list[tuple[float, float]],
) -> None:
    """Offsets and delivery delays from the network: the learned re-dating may take a node's
    sightings, never date one further than ``max_clock_skew_s`` from when it arrived."""
    clock = ManualClock()
    accepted: list[Sighting] = []
    arrivals: list[float] = []

    def take(sighting: Sighting) -> None:
        accepted.append(sighting)
        arrivals.append(clock.wall)

    remote = RemoteReceivers(RemoteSettings(), Topics("retail/v1", "s1"), ["entrance"], take, clock.clock)
    for offset, delay in messages:
        line = format_trace_line(app_sighting("c1", clock.wall + offset - delay))
        remote.handle(GENERIC + "entrance", line.encode())
        clock.advance(1)
    assert all(abs(s.ts - at) <= 30.0 for s, at in zip(accepted, arrivals, strict=True))

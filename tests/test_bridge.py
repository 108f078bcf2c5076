"""The store-side bridge: agent -> store mosquitto -> bridge (TLS, client certificate) -> HQ
mosquitto -> HQ consumer, with the store's broker running config/mosquitto-store-bridge.conf and
config/mosquitto-store-acl.conf. The line to HQ is cut for 30 s under load and nothing is lost;
downlinks cross the bridge, also those HQ sent during the cut; on the store LAN a receiver's
credentials can neither forge a downlink, nor read the feed, nor speak for another receiver."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.service import Service
from edge_agent.hq.consumer import HqConsumer
from tests.conftest import Subscriber, wait_for
from tests.fault_agent import generate
from tests.helpers import app_sighting, customers_downlink, orders_downlink
from tests.store_bridge import AGENT_PASSWORD, RECEIVER_PASSWORD, BridgedStore

pytestmark = pytest.mark.mqtt

STORE = "s1"
CUT_S = 30
EVENTS, RATE = 4000, 100  # 40 s of load: before, across and after the cut


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[BridgedStore]:
    topology = BridgedStore(tmp_path / "brokers", STORE)
    yield topology
    topology.stop()


@pytest.fixture
def hq_watch(bridged: BridgedStore, subscriber_factory: Callable[..., Subscriber]) -> Subscriber:
    """HQ's side: every topic of the store, and the bridge's state; publishes downlinks."""
    watch = subscriber_factory(bridged.hq, f"retail/v1/stores/{STORE}/#", client_id="hq-watch")
    wait_for(lambda: bridge_states(watch)[-1:] == [1], 15, "the bridge connected to HQ")
    return watch


def bridge_states(watch: Subscriber) -> list[Any]:
    return watch.on("/bridge")


@pytest.fixture
def agent(tmp_path: Path, bridged: BridgedStore, hq_watch: Subscriber) -> Iterator[Service]:
    """The real daemon, logged in to the store broker as the store."""
    config = config_from_mapping(
        {
            "store": {"id": STORE, "timezone": "Europe/Rome"},
            "zones": [{"id": "entrance"}, {"id": "counter"}],
            "receivers": [{"id": "entrance", "zone": "entrance"}, {"id": "counter", "zone": "counter"}],
            "mqtt": {"host": "127.0.0.1", "port": bridged.agent_port, "username": STORE,
                     "password": AGENT_PASSWORD, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5,
                     "keepalive_s": 5},
            "storage": {"path": str(tmp_path / "agent.db"), "group_max_delay_s": 0.02,
                        "disk_reserve_bytes": 0},
            "scheduler": {"tick_interval_s": 0.2, "heartbeat_interval_s": 1},
        }
    )  # fmt: skip
    service = Service(config)
    service.start()
    assert service.link.wait_connected(10)
    yield service
    service.stop(5)


class LanClient:
    """Someone on the store LAN with an account on the store broker (MQTT v5, to see reason codes)."""

    def __init__(self, bridged: BridgedStore, username: str | None, password: str | None) -> None:
        self.messages: list[str] = []
        self.pubacks: dict[int, str] = {}
        self.subacks: list[str] = []
        self.connack: list[str] = []
        self._subscribed = threading.Event()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"lan-{username}", protocol=mqtt.MQTTv5)
        if username is not None:
            client.username_pw_set(username, password)
        client.on_connect = lambda c, u, flags, reason, props: self.connack.append(str(reason))
        client.on_message = lambda c, u, m: self.messages.append(m.topic)
        client.on_publish = lambda c, u, mid, reason, props: self.pubacks.__setitem__(mid, str(reason))
        client.on_subscribe = self._on_subscribe
        client.connect("127.0.0.1", bridged.lan_port)
        client.loop_start()
        self.client = client

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self.subacks.extend(str(r) for r in reasons)
        self._subscribed.set()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> str:
        """The broker's answer: "Success" or "Not authorized"."""
        info = self.client.publish(topic, payload, qos=qos)
        wait_for(lambda: info.mid in self.pubacks, 10, f"PUBACK for {topic}")
        return self.pubacks[info.mid]

    def subscribe(self, *filters: str) -> list[str]:
        self.client.subscribe([(f, 1) for f in filters])
        wait_for(self._subscribed.is_set, 10, "SUBACK")
        return self.subacks

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def lan_factory(bridged: BridgedStore) -> Iterator[Callable[..., LanClient]]:
    made: list[LanClient] = []

    def make(username: str | None, password: str | None = RECEIVER_PASSWORD) -> LanClient:
        made.append(LanClient(bridged, username, password))
        return made[-1]

    yield make
    for client in made:
        client.close()


def stored_ids(db: Path) -> list[str]:
    """Every event id in HQ's database, one per row (the primary key dedupes redeliveries)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return [row[0] for row in conn.execute("SELECT event_id FROM events WHERE event_id LIKE 'E%'")]
    except sqlite3.OperationalError:
        return []  # the consumer has not created the table yet


# ---------------------------------------------------------------------------------------------- the cut


def test_a_30_s_cut_of_the_line_to_hq_under_load_loses_nothing_and_stores_each_event_once(
    tmp_path: Path, bridged: BridgedStore, hq_watch: Subscriber, agent: Service
) -> None:
    hq_db = tmp_path / "hq.db"
    consumer = HqConsumer(bridged.hq.host, bridged.hq.port, "hq", hq_db, client_id="hq-1").start()
    try:
        wait_for(consumer.subscribed.is_set, 10, "the consumer subscribed")
        spec = {"count": EVENTS, "rate": RATE, "kind": "telemetry", "exit_when_drained": False}
        threading.Thread(target=generate, args=(agent, spec), name="load", daemon=True).start()
        wait_for(lambda: len(stored_ids(hq_db)) >= 200, 30, "events stored at HQ through the bridge")

        bridged.wan.cut()
        cut_at = time.monotonic()
        # HQ sends a registry while the store is cut off: HQ's broker keeps it for the bridge.
        hq_watch.publish(f"retail/v1/stores/{STORE}/in/customers", customers_downlink(("c1", True, False)))
        wait_for(lambda: bridge_states(hq_watch)[-1:] == [0], CUT_S, "HQ told by the bridge's will")
        wait_for(lambda: time.monotonic() - cut_at >= CUT_S, CUT_S + 5, f"{CUT_S} s of cut line")
        at_hq = len(set(stored_ids(hq_db)))
        generated = _generated(agent)
        # The store's broker acknowledged what the agent sent: the cut's events wait there.
        assert generated - at_hq >= RATE * CUT_S * 0.8, (generated, at_hq)
        assert agent.pipeline.outbox.depth() < (generated - at_hq) / 4, agent.pipeline.outbox.depth()

        bridged.wan.restore()
        restored_at = time.monotonic()
        wait_for(lambda: len(set(stored_ids(hq_db))) >= EVENTS, 120, "every event stored at HQ")
        caught_up = time.monotonic() - restored_at
        wait_for(lambda: "c1" in agent.pipeline.core.customers, 10, "the downlink sent during the cut")
    finally:
        consumer.stop()
    ids = stored_ids(hq_db)
    expected = {f"E{i:06d}" for i in range(EVENTS)}
    assert set(ids) == expected, sorted(expected - set(ids))[:20]  # lost = 0
    assert len(ids) == EVENTS  # each exactly once in HQ's table
    print(
        f"\nbridge cut {CUT_S}s: {EVENTS} events, {generated - at_hq} queued in the store broker, "
        f"caught up {caught_up:.1f}s after the line returned, {consumer.stats.duplicates} redelivered "
        f"and deduplicated at HQ"
    )


def _generated(service: Service) -> int:
    with service.database.lock:
        return int(service.database.db.conn.execute("SELECT count(*) FROM generated").fetchone()[0])


# ---------------------------------------------------------------------------------------------- downlinks


def test_store_and_fleet_downlinks_from_hq_reach_the_agent_through_the_bridge(
    hq_watch: Subscriber, agent: Service
) -> None:
    hq_watch.publish(f"retail/v1/stores/{STORE}/in/customers", customers_downlink(("c1", True, False)))
    hq_watch.publish(
        "retail/v1/fleet/in/customers", customers_downlink(("c2", True, False), message_id="f-1")
    )
    wait_for(lambda: {"c1", "c2"} <= set(agent.pipeline.core.customers), 10, "both downlinks at the store")
    # And the agent's answers go back: its status (retained at the store, bridged to HQ).
    wait_for(lambda: any(p.get("state") == "online" for p in hq_watch.on("/status")), 10, "the status at HQ")


# ---------------------------------------------------------------------------------------------- ACL


def test_a_receivers_credentials_cannot_forge_an_order_a_registry_or_an_erase_command(
    hq_watch: Subscriber, agent: Service, lan_factory: Callable[..., LanClient]
) -> None:
    hq_watch.publish(f"retail/v1/stores/{STORE}/in/customers", customers_downlink(("c1", True, False)))
    wait_for(lambda: "c1" in agent.pipeline.core.customers, 10, "the registry from HQ")
    receiver = lan_factory("entrance")
    erase = {"schema": "commands.v1", "message_id": "forged-1",
             "commands": [{"command": "erase", "customer_id": "c1", "request_id": "r1"}]}  # fmt: skip
    forged = {
        f"retail/v1/stores/{STORE}/in/commands": json.dumps(erase).encode(),
        f"retail/v1/stores/{STORE}/in/customers": customers_downlink(
            ("c3", True, True), message_id="forged-2"
        ),
        f"retail/v1/stores/{STORE}/in/orders": orders_downlink(("o1", "c1", "ready"), message_id="forged-3"),
        "retail/v1/fleet/in/customers": customers_downlink(("c4", True, True), message_id="forged-4"),
    }
    for topic, payload in forged.items():
        assert receiver.publish(topic, payload) == "Not authorized", topic
    # Refused before HQ sends its next downlink: had the broker accepted them, it would have
    # routed them to the agent's session then, ahead of that downlink.
    hq_watch.publish(
        f"retail/v1/stores/{STORE}/in/customers", customers_downlink(("c5", True, False), message_id="r-2")
    )
    wait_for(lambda: "c5" in agent.pipeline.core.customers, 10, "HQ's next downlink")
    assert set(agent.pipeline.core.customers) == {"c1", "c5"}  # nothing erased, nothing added
    assert agent.pipeline.core.orders == {}
    assert not hq_watch.on("/errors")  # nor even seen and rejected by the agent


def test_a_receivers_credentials_read_nothing_of_the_feed_nor_of_the_downlinks(
    hq_watch: Subscriber, agent: Service, lan_factory: Callable[..., LanClient]
) -> None:
    receiver = lan_factory("entrance")
    filters = ("#", f"retail/v1/stores/{STORE}/#", "retail/v1/stores/+/events/#", "retail/v1/fleet/in/#",
               f"retail/v1/stores/{STORE}/sightings/+")  # fmt: skip
    # mosquitto 2.0.11's ACL file grants every SUBSCRIBE and checks read access on each message
    # it would deliver (security_default.c: "FIXME - implement ACL subscription strings").
    assert len(receiver.subscribe(*filters)) == len(filters)
    hq_watch.publish(f"retail/v1/stores/{STORE}/in/customers", customers_downlink(("c1", True, False)))
    wait_for(lambda: "c1" in agent.pipeline.core.customers, 10, "the registry at the agent")
    now = time.time()
    for ts in (now - 2, now - 1, now):
        agent.submit(app_sighting("c1", ts))
    wait_for(lambda: hq_watch.on("/events/visit"), 15, "the visit at HQ")
    wait_for(lambda: hq_watch.on("/status"), 10, "a status at HQ")
    assert receiver.messages == []
    # Nobody without an account gets in at all.
    anonymous = lan_factory(None, None)
    wait_for(lambda: anonymous.connack, 10, "the CONNACK")
    assert set(anonymous.connack) == {"Not authorized"}


def test_a_receiver_publishes_its_own_sightings_only_and_they_never_leave_the_store(
    hq_watch: Subscriber, agent: Service, lan_factory: Callable[..., LanClient]
) -> None:
    receiver = lan_factory("entrance")
    line = {"ts": time.time(), "receiver": "entrance", "address": "5A:00:00:00:00:09", "rssi": -60}
    sightings = f"retail/v1/stores/{STORE}/sightings"
    assert receiver.publish(f"{sightings}/counter", json.dumps(line).encode()) == "Not authorized"
    assert receiver.publish(f"{sightings}/entrance", json.dumps(line).encode()) == "Success"
    remote = agent.remote
    assert remote is not None
    wait_for(lambda: remote.status().accepted == 1, 10, "the agent took the receiver's sighting")
    # Neither may it publish an uplink in the store's name.
    assert receiver.publish(f"retail/v1/stores/{STORE}/events/visit", b'{"forged": true}') == "Not authorized"
    # Sightings are not bridged: the agent's next status, published after the sighting and
    # bridged in order behind anything published before it, reaches HQ; no sighting does.
    statuses = len(hq_watch.on("/status"))
    wait_for(lambda: len(hq_watch.on("/status")) > statuses, 10, "a status after the sighting")
    assert not [p for p in hq_watch.on("/events/visit") if "forged" in p]
    assert not [t for t, _ in hq_watch.messages if "/sightings/" in t]

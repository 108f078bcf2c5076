"""The daemon against a real mosquitto: outages lose nothing, bad downlinks cost nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from edge_agent.adapters.link import MqttLink
from edge_agent.core.errors import BrokerRefused
from edge_agent.core.events import NotificationMessage, VisitMessage, utc
from edge_agent.core.settings import AgentConfig
from edge_agent.daemon.service import Service
from edge_agent.tools.embedded_broker import EmbeddedBroker
from tests.conftest import Mosquitto, Subscriber, make_config, wait_for
from tests.helpers import app_sighting, customers_downlink, many_customers

pytestmark = pytest.mark.mqtt

STATUS = "retail/v1/stores/s1/status"


@pytest.fixture
def services() -> Iterator[Callable[[AgentConfig], Service]]:
    started: list[Service] = []

    def make(config: AgentConfig) -> Service:
        service = Service(config)
        started.append(service)
        return service

    yield make
    for service in started:
        service.stop(timeout=5)


@pytest.fixture
def connected(
    tmp_path: Path,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    services: Callable[[AgentConfig], Service],
) -> tuple[Service, Subscriber]:
    """A running agent connected to mosquitto, and HQ subscribed to everything it publishes."""
    hq = subscriber_factory(mosquitto)
    service = services(make_config(tmp_path, mosquitto))
    service.start()
    assert service.link.wait_connected(10)
    return service, hq


def _register(service: Service, customers: Iterable[str]) -> None:
    payload = customers_downlink(*((c, True, False) for c in customers))
    assert service.pipeline.downlink("retail/v1/stores/s1/in/customers", payload, time.time())


def _visits_for(service: Service, customers: list[str]) -> None:
    now = time.time()
    for customer in customers:
        service.submit(app_sighting(customer, now))


def test_events_enqueued_while_the_broker_is_down_all_arrive_once_it_starts(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    subscriber_factory: Callable[..., Subscriber],
    services: Callable[[AgentConfig], Service],
) -> None:
    broker = mosquitto_factory(persistence=True).start()
    hq = subscriber_factory(broker, persistent=True)
    broker.stop()
    service = services(make_config(tmp_path, broker))
    customers = many_customers(200)
    _register(service, customers)
    service.start()
    _visits_for(service, list(customers))
    # Each arrival is a visit start and the zone it starts in.
    wait_for(lambda: service.pipeline.outbox.depth() == 400, 10, "200 visits and their zones in the outbox")
    assert not service.link.connected

    broker.start()
    wait_for(lambda: len(set(hq.event_ids("/events/visit"))) == 200, 30, "all 200 events at HQ")
    wait_for(lambda: service.pipeline.outbox.depth() == 0, 10, "the outbox to drain")
    received = {p["customer_id"] for p in hq.on("/events/visit")}
    assert received == set(customers)


def test_broker_stopped_mid_stream_and_restarted_loses_no_event(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    subscriber_factory: Callable[..., Subscriber],
    services: Callable[[AgentConfig], Service],
) -> None:
    broker = mosquitto_factory(persistence=True).start()
    hq = subscriber_factory(broker, persistent=True)
    service = services(make_config(tmp_path, broker))
    customers = list(many_customers(600))
    _register(service, customers)
    service.start()
    assert service.link.wait_connected(10)

    _visits_for(service, customers[:300])
    wait_for(lambda: hq.event_ids("/events/visit"), 10, "the stream to start")
    broker.stop()  # mid-stream: some events delivered, some in flight, some still queued
    _visits_for(service, customers[300:])
    broker.start()

    wait_for(lambda: len(set(hq.event_ids("/events/visit"))) == 600, 30, "all 600 events at HQ")
    wait_for(lambda: service.pipeline.outbox.depth() == 0, 10, "the outbox to drain")
    assert service.link.stats.disconnects >= 1
    # The agent published each event once, plus at most the rows in flight at the fault (paho's
    # own DUP resends are not new publishes). Duplicates HQ sees beyond that are the broker
    # redelivering to HQ's session, which is the broker's business and HQ deduplicates.
    # 600 visit starts and 600 first zones.
    assert 1200 <= service.link.stats.published <= 1200 + service.config.mqtt.inflight_window


def test_a_hundred_malformed_downlinks_each_get_an_error_and_the_agent_keeps_publishing(
    connected: tuple[Service, Subscriber],
) -> None:
    service, hq = connected
    root = "retail/v1/stores/s1/in"
    malformed: list[tuple[str, bytes]] = []
    for i in range(100):
        match i % 4:
            case 0:
                malformed.append((f"{root}/customers", b"{not json " + str(i).encode()))
            case 1:
                body = {"schema": "orders.v1", "message_id": f"m{i}", "orders": [{"order_id": i}]}
                malformed.append((f"{root}/orders", json.dumps(body).encode()))
            case 2:
                malformed.append((f"{root}/weather{i}", b"{}"))
            case _:
                malformed.append(
                    (
                        "retail/v1/fleet/in/customers",
                        json.dumps({"message_id": f"m{i}", "upsert": 5}).encode(),
                    )
                )
    for topic, payload in malformed:
        hq.publish(topic, payload)

    wait_for(lambda: len(hq.on("/errors")) == 100, 20, "100 error messages")
    reasons = [e["reason"] for e in hq.on("/errors")]
    assert sum("not JSON" in r for r in reasons) == 25
    assert sum("unknown kind 'weather" in r for r in reasons) == 25
    assert sum("orders[0]" in r for r in reasons) == 25
    assert service.pipeline.counters["downlinks_rejected"] == 100

    # Still alive, still applying good downlinks and still publishing.
    many_customers(1)
    hq.publish(f"{root}/customers", customers_downlink(("m00000", True, False), message_id="good"))
    wait_for(lambda: "m00000" in service.pipeline.core.customers, 10, "the good downlink to apply")
    _visits_for(service, ["m00000"])
    wait_for(lambda: hq.on("/events/visit"), 10, "a visit event after the bad downlinks")


def test_birth_is_retained_online_and_a_clean_stop_leaves_offline(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    service = Service(make_config(tmp_path, mosquitto))
    service.start()
    assert service.link.wait_connected(10)
    late = subscriber_factory(mosquitto, STATUS, client_id="late")  # joins after the birth: retained
    wait_for(lambda: late.on("/status"), 10, "retained status")
    assert late.on("/status")[-1]["state"] == "online"
    service.stop()
    wait_for(lambda: late.on("/status")[-1]["state"] == "offline", 10, "offline status")
    after = subscriber_factory(mosquitto, STATUS, client_id="after")
    wait_for(lambda: after.on("/status"), 10, "retained status after stop")
    assert after.on("/status")[-1]["state"] == "offline"


def test_downlink_received_but_not_yet_applied_is_redelivered_after_a_crash(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto)
    config = make_config(tmp_path, mosquitto)
    crashed = Service(config)
    crashed.link.start()  # the link only: downlinks arrive but the main loop never applies them
    assert crashed.link.wait_connected(10)
    many_customers(3)
    hq.publish(
        "retail/v1/fleet/in/customers", customers_downlink(*((f"m{i:05d}", True, True) for i in range(3)))
    )
    wait_for(lambda: not crashed._work.empty(), 10, "the downlink to reach the agent")
    _die_like_a_killed_process(crashed)

    restarted = Service(config)  # same client id, persistent session: the broker still owes it
    restarted.start()
    try:
        wait_for(lambda: len(restarted.pipeline.core.customers) == 3, 15, "the redelivered registry")
        assert len(list(restarted.pipeline.state.customers())) == 3
    finally:
        restarted.stop(5)


def _die_like_a_killed_process(service: Service) -> None:
    """Stop every thread and drop the socket: no PUBACK for the downlink, no DISCONNECT sent."""
    link = service.link
    link._connected.clear()  # so the link thread's shutdown skips its goodbye, as a killed process does
    link._stopping.set()
    link.wake()
    link._thread.join(5)
    link._client._sock_close()
    service.database.close()


def test_downlink_is_applied_and_kept(connected: tuple[Service, Subscriber]) -> None:
    service, hq = connected
    many_customers(3)
    hq.publish(
        "retail/v1/fleet/in/customers", customers_downlink(*((f"m{i:05d}", True, True) for i in range(3)))
    )
    wait_for(lambda: len(service.pipeline.core.customers) == 3, 10, "registry of 3")
    assert {c.customer_id for c in service.pipeline.state.customers()} == {"m00000", "m00001", "m00002"}


def test_broker_refusing_our_credentials_is_reported_at_once(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    broker = mosquitto_factory()
    broker.config_path.write_text(
        broker.config_path.read_text().replace("allow_anonymous true", "allow_anonymous false")
    )
    broker.start()
    service = Service(make_config(tmp_path, broker))
    service.link.start()
    try:
        with pytest.raises(BrokerRefused) as caught:
            service.link.wait_connected(10)
        assert "Not authorized" in str(caught.value)
    finally:
        service.link.stop(1)
        service.database.close()


def test_broker_that_does_not_speak_our_protocol_is_reported_not_waited_on_forever(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:  # amqtt speaks MQTT 3.1.1 only, and stays silent to MQTT 5
        config = make_config(tmp_path, mqtt={"host": broker.host, "port": broker.port, "protocol": "5"})
        service = Service(config)
        link: MqttLink = service.link
        link.start()
        try:
            with pytest.raises(BrokerRefused) as caught:
                link.wait_connected(30)
            assert "check mqtt.protocol" in str(caught.value)
        finally:
            link.stop(1)
            service.database.close()


def test_a_notification_past_its_expiry_is_dropped_not_sent_late(
    tmp_path: Path,
    mosquitto: Mosquitto,
    subscriber_factory: Callable[..., Subscriber],
    services: Callable[[AgentConfig], Service],
) -> None:

    hq = subscriber_factory(mosquitto)
    service = services(make_config(tmp_path, mosquitto))
    now = time.time()
    common = {"store_id": "s1", "ts": utc(now - 700), "customer_id": "c1", "visit_id": "v1"}
    stale = NotificationMessage(
        event_id="01N0000000000000000000000A", audience="customer", template="cnc.arrival.customer",
        language="en", text="Your order is ready", expires=utc(now - 100), **common,
    )  # fmt: skip
    fresh = stale.model_copy(update={"event_id": "01N0000000000000000000000B", "expires": utc(now + 600)})
    visit = VisitMessage(
        event_id="01V0000000000000000000000A", phase="started", started_at=utc(now - 700),
        entry_receiver="entrance", **common,
    )  # fmt: skip
    service.pipeline.outbox.add([stale, fresh, visit], now - 700)  # queued while the store was offline
    service.start()
    wait_for(lambda: len(hq.on("/events/visit")) == 1, 10, "the visit")
    wait_for(lambda: service.pipeline.outbox.depth() == 0, 10, "the outbox to drain")
    assert hq.event_ids("/notifications") == ["01N0000000000000000000000B"]
    assert service.link.stats.expired == 1


@pytest.mark.mqtt
def test_a_link_whose_status_is_no_status_message_still_connects(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Load tools and tests hand the link stand-in status bytes; making the last will from them
    must not stop the link from ever connecting (it looped on a validation error)."""
    from edge_agent.adapters.clock import SYSTEM_CLOCK
    from edge_agent.storage.database import Database
    from edge_agent.storage.outbox import Outbox

    config = make_config(tmp_path, mosquitto)
    database = Database(config.storage.path)
    link = MqttLink(
        config.mqtt, config.topics, Outbox(database, config.topics), client_id="stand-in-status",
        on_downlink=lambda delivery: None, status_payload=lambda state: b"{}", clock=SYSTEM_CLOCK,
    )  # fmt: skip
    link.start()
    try:
        assert link.wait_connected(10)
    finally:
        link.stop(2)
        database.close()

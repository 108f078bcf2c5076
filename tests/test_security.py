"""TLS with client certificates and username/password against a real mosquitto running the ACL
from config/: a store publishes under its own prefix and reads its own and the fleet's
downlinks, and nothing else; secrets never reach the logs."""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.service import Service
from tests.conftest import REPO, Mosquitto, free_port, port_open, wait_for
from tests.helpers import app_sighting, customers_downlink
from tests.pki import Pki

HQ_PASSWORD = "hq-s3cret-passw0rd"
STORE_PASSWORD = "store-s3cret-passw0rd"


class SecureBroker:
    def __init__(self, workdir: Path) -> None:
        self.pki = Pki(workdir)
        server_cert, server_key = self.pki.issue("localhost", server=True)
        self.tls_port = free_port()
        passwords = workdir / "passwd"
        passwords.touch(mode=0o600)
        for user, password in (("hq", HQ_PASSWORD), ("s1", STORE_PASSWORD)):
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
        self.mosquitto = Mosquitto(
            workdir,
            anonymous=False,
            extra=[
                f"password_file {passwords}",
                f"acl_file {REPO / 'config' / 'mosquitto-acl.conf'}",
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.pki.ca_file}",
                f"certfile {server_cert}",
                f"keyfile {server_key}",
                "require_certificate true",
                "use_identity_as_username true",
            ],
        ).start()
        wait_for(lambda: port_open(self.host, self.tls_port), 10, "the TLS listener")

    @property
    def host(self) -> str:
        return self.mosquitto.host

    @property
    def port(self) -> int:
        return self.mosquitto.port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[SecureBroker]:
    secure = SecureBroker(tmp_path)
    yield secure
    secure.mosquitto.stop()


class Client:
    """A bare MQTT v5 client that records messages, PUBACK reason codes and SUBACKs."""

    def __init__(self, name: str, host: str, port: int, **auth: Any) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, str] = {}
        self.subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
        if "username" in auth:
            self.client.username_pw_set(auth["username"], auth["password"])
        if "cert" in auth:
            self.client.tls_set(
                ca_certs=str(auth["ca"]), certfile=str(auth["cert"]), keyfile=str(auth["key"])
            )
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.on_publish = lambda c, u, mid, reason, props: self.pubacks.__setitem__(mid, str(reason))
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes) -> int:
        info = self.client.publish(topic, payload, qos=1)
        wait_for(lambda: info.mid in self.pubacks, 10, f"PUBACK for {topic}")
        return info.mid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _agent_config(tmp_path: Path, broker: SecureBroker, **mqtt_settings: Any) -> Any:
    return config_from_mapping(
        {
            "store": {"id": "s1"},
            "zones": [{"id": "entrance"}],
            "receivers": [{"id": "entrance", "zone": "entrance"}],
            "mqtt": {"host": broker.host, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **mqtt_settings},
            "storage": {"path": str(tmp_path / "agent.db"), "group_max_delay_s": 0.02},
        }
    )


def test_a_store_with_a_client_certificate_publishes_under_its_prefix_and_gets_its_downlinks(
    tmp_path: Path, broker: SecureBroker
) -> None:
    cert, key = broker.pki.issue("s1")
    config = _agent_config(
        tmp_path, broker, port=broker.tls_port,
        tls={"enabled": True, "ca_file": str(broker.pki.ca_file), "cert_file": str(cert),
             "key_file": str(key)},
    )  # fmt: skip
    hq = Client("hq", broker.host, broker.port, username="hq", password=HQ_PASSWORD)
    hq.client.subscribe("retail/v1/stores/+/events/#", qos=1)
    wait_for(hq.subscribed.is_set, 10, "HQ's SUBACK")
    service = Service(config)
    service.start()
    try:
        assert service.link.wait_connected(10)
        hq.publish(
            "retail/v1/fleet/in/customers", customers_downlink(("c1", True, False))
        )  # a fleet downlink
        wait_for(lambda: len(service.pipeline.core.customers) == 1, 10, "the fleet downlink at the store")
        service.submit(app_sighting("c1", time.time()))
        wait_for(lambda: any(t.endswith("/events/visit") for t, _ in hq.messages), 10, "the visit at HQ")
        assert all(t.startswith("retail/v1/stores/s1/") for t, _ in hq.messages)
    finally:
        service.stop(5)
        hq.close()


def test_the_acl_denies_another_stores_prefix_and_another_stores_downlinks(
    tmp_path: Path, broker: SecureBroker
) -> None:
    cert, key = broker.pki.issue("s1")
    store = Client("s1-raw", broker.host, broker.tls_port, ca=broker.pki.ca_file, cert=cert, key=key)
    hq = Client("hq", broker.host, broker.port, username="hq", password=HQ_PASSWORD)
    hq.client.subscribe("retail/v1/stores/#", qos=1)
    wait_for(hq.subscribed.is_set, 10, "HQ's SUBACK")
    store.client.subscribe([("retail/v1/stores/s2/in/#", 1), ("retail/v1/stores/s1/in/#", 1)])
    wait_for(store.subscribed.is_set, 10, "the store's SUBACK")
    try:
        # HQ writes to both stores' downlinks; the store hears only its own (QoS 1 keeps order, so
        # once the second arrives the first would have too).
        hq.publish("retail/v1/stores/s2/in/orders", b'{"other": 1}')
        hq.publish("retail/v1/stores/s1/in/orders", b'{"own": 1}')
        wait_for(lambda: store.messages, 10, "the store's own downlink")
        assert [t for t, _ in store.messages] == ["retail/v1/stores/s1/in/orders"]
        # Publishing under another store's prefix is refused with a failure code, not dropped
        # silently. (With the test broker's max_queued_messages 0, mosquitto 2.0.11 then also drops
        # the connection, reading 0 as a full queue; the agent's link keeps a persistent session
        # and counts the refusal towards the dead-letter table either way.)
        allowed = store.publish("retail/v1/stores/s1/events/visit", b'{"own": true}')
        denied = store.publish("retail/v1/stores/s2/events/visit", b'{"forged": true}')
        assert store.pubacks[allowed] == "Success"
        assert store.pubacks[denied] == "Not authorized"
        wait_for(
            lambda: any(t == "retail/v1/stores/s1/events/visit" for t, _ in hq.messages),
            10,
            "the allowed event",
        )
        assert not any("/s2/" in t for t, _ in hq.messages if "/in/" not in t)
    finally:
        store.close()
        hq.close()


def test_password_login_works_a_wrong_one_is_refused_and_secrets_never_reach_the_logs(
    tmp_path: Path, broker: SecureBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = _agent_config(tmp_path, broker, port=broker.port, username="s1", password=STORE_PASSWORD)
    service = Service(good)
    service.start()
    try:
        assert service.link.wait_connected(10)
        status = json.loads(service.status_message("online").to_json())
        assert STORE_PASSWORD not in json.dumps(status)
    finally:
        service.stop(5)
    bad = _agent_config(tmp_path / "bad", broker, port=broker.port, username="s1", password="wrong")
    refused = Service(bad)
    refused.start()
    try:
        with pytest.raises(Exception, match=r"(?i)not authori|bad user name"):
            refused.link.wait_connected(10)
    finally:
        refused.stop(5)
    assert STORE_PASSWORD not in caplog.text
    assert "wrong" not in caplog.text

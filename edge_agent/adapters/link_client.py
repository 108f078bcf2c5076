"""The paho client the MQTT link drives, configured from ``MqttSettings``."""

from __future__ import annotations

import ssl
from datetime import datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import ValidationError

from edge_agent.core.events import StatusMessage
from edge_agent.core.settings import MqttSettings


def make_client(settings: MqttSettings, client_id: str) -> mqtt.Client:
    """A persistent-session client with manual downlink acks, credentials and TLS. Its last will
    is set before each CONNECT (``set_will``), which fixes it for that connection."""
    v5 = settings.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=True,
    )
    if settings.username:
        password = settings.password.get_secret_value() if settings.password else None
        client.username_pw_set(settings.username, password)
    if settings.tls.enabled:
        client.tls_set(
            ca_certs=str(settings.tls.ca_file),
            certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
            keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    # The link never has more than inflight_window rows unacknowledged, so paho's own limit
    # is off: with it on, paho scans its whole out-queue on every PUBACK (_update_inflight),
    # measured at an eighth of the link thread's time while draining.
    client.max_inflight_messages_set(0)
    return client


def connect_async(client: mqtt.Client, settings: MqttSettings) -> None:
    """Set where and how to connect; the link thread's first ``reconnect`` sends the CONNECT."""
    properties = None
    if settings.protocol == "5":
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        properties.SessionExpiryInterval = settings.session_expiry_s
    client.connect_async(
        settings.host,
        settings.port,
        keepalive=settings.keepalive_s,
        clean_start=False if settings.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
        properties=properties,
    )


def set_will(client: mqtt.Client, topic: str, offline: bytes, now: datetime) -> datetime:
    """Set the last will for the next CONNECT, which fixes it for that connection: dated now,
    marked as a will, ``since`` naming the connection it belongs to (see docs/hq.md); returns
    that moment. A payload that is not a ``status.v1`` (a test's or a load tool's stand-in) is
    the will as it is: the link must connect whatever its caller reports."""
    try:
        will = StatusMessage.model_validate_json(offline)
    except ValidationError:
        client.will_set(topic, offline, qos=1, retain=True)
        return now
    client.will_set(
        topic, will.model_copy(update={"will": True, "since": will.ts}).to_json(), qos=1, retain=True
    )
    return will.ts

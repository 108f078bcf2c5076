"""The daemon with a generator of known events, as a separate process for fault tests.

``python -m tests.fault_agent SPEC.json`` runs the real ``Service`` (main loop, MQTT link,
scheduler, heartbeat, SIGTERM handling) and a thread that generates events ``E{first}`` ..
``E{first+count-1}`` into its outbox, each in the same transaction as a durable progress mark,
so a restart after ``kill -9`` continues where the killed process stopped.

SPEC keys: ``config`` (the TOML as a mapping), ``first``, ``count``, ``rate`` (events per second,
or null for as fast as possible), ``kind`` (``telemetry``, ``transactional``, or ``mixed``: every
fifth event transactional) and ``exit_when_drained`` (stop like systemd would, with SIGTERM to itself, once
everything is generated and acknowledged). Prints ``all events generated`` and ``drained`` as it gets there.

Optional ``shoppers``: registered customers walking in one after another (``count``, every
``every_s``, staying ``stay_s``, heard once a second), their phones' tokens on true time
(``true_minus_monotonic``: the monotonic clock is shared by every process and never faked). Heard
by the box's own radio, stamped with agent time as the BLE scanner stamps them, or, with
``receiver_clock_offset_s``, by a remote receiver publishing on the store's MQTT with its own
clock that far off; ``lead_s`` seconds of a passer-by's phone (no customer) come first, as a
receiver hears phones all day. Their visits end before the drain, so HQ has every visit whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.errors import DiskFull
from edge_agent.core.events import BeaconMessage, BeaconStatus, Message, PurchaseMessage, utc
from edge_agent.core.frames import EddystoneEid, encode_eddystone_eid
from edge_agent.core.identity import eid_token
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import sighting_to_json
from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.service import Service

# Every visit of the shoppers' is heard at this receiver.
SHOPPER_RECEIVER = "entrance"


def is_transactional(i: int, kind: str) -> bool:
    return kind == "transactional" or (kind == "mixed" and i % 5 == 0)


def event(i: int, store_id: str, now: float, kind: str) -> Message:
    """Telemetry goes on the beacon stream, which nothing else writes in a store without beacons
    (the core's own footfall reports would take sequence numbers the tests count on)."""
    if is_transactional(i, kind):
        return PurchaseMessage(
            event_id=f"E{i:06d}", store_id=store_id, ts=utc(now), receipt_id=f"R{i}", customer_id="c1",
            visit_id=None, total=1.0, items=1,
        )  # fmt: skip
    return BeaconMessage(
        event_id=f"E{i:06d}", store_id=store_id, ts=utc(now), event="low_battery",
        beacon=BeaconStatus(beacon_id=f"b{i}", name="shelf", state="present", battery_mv=2100),
    )  # fmt: skip


def shopper_key(i: int) -> bytes:
    return hashlib.sha256(f"shopper {i}".encode()).digest()[:16]


def register_shoppers(service: Service, count: int) -> None:
    """The shoppers as HQ would send them, applied before the main loop starts."""
    upsert = [
        {"customer_id": f"c{i}", "identity_key": shopper_key(i).hex(), "consent": {"service": True}}
        for i in range(count)
    ]
    payload = json.dumps({"schema": "customers.v1", "message_id": "shoppers", "upsert": upsert}).encode()
    topic = f"{service.config.mqtt.topic_prefix}/stores/{service.config.store.id}/in/customers"
    assert service.pipeline.downlink(topic, payload, service.clock.wall())


def walk_shoppers(service: Service, plan: dict[str, Any], done: threading.Event) -> None:
    count, every, stay = plan["count"], plan["every_s"], plan["stay_s"]
    k = service.config.identity.rotation_exponent
    remote_offset = plan.get("receiver_clock_offset_s")
    publisher = None
    if remote_offset is not None:
        mqtt_settings = service.config.mqtt
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fault-receiver")
        publisher.connect(mqtt_settings.host, mqtt_settings.port)
        publisher.loop_start()
        topic = f"{mqtt_settings.topic_prefix}/stores/{service.config.store.id}/sightings/{SHOPPER_RECEIVER}"
    lead = plan.get("lead_s", 0.0)
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < lead + (count - 1) * every + stay:
        true_now = time.monotonic() + plan["true_minus_monotonic"]
        ts = service.clock.wall() if publisher is None else true_now + remote_offset
        heard = [
            Sighting(ts, SHOPPER_RECEIVER, "4A:00:00:00:00:01", -60, manufacturer_data={0x004C: b"\x10\x05"})
        ]
        for i in range(count):
            if lead + i * every <= elapsed < lead + i * every + stay:
                token = eid_token(shopper_key(i), k, int(true_now))
                frame = {EDDYSTONE_SERVICE_UUID: encode_eddystone_eid(EddystoneEid(-20, token))}
                heard.append(Sighting(ts, SHOPPER_RECEIVER, f"5A:00:00:00:{i // 256:02X}:{i % 256:02X}", -60,
                                      service_data=frame))  # fmt: skip
        if publisher is not None:
            publisher.publish(topic, json.dumps([sighting_to_json(s) for s in heard]), qos=1)
        for sighting in heard if publisher is None else []:
            service.submit(sighting)
        time.sleep(1.0)  # a phone advertising once a second, not synchronisation
    if publisher is not None:
        publisher.loop_stop()
    print("all shoppers left", flush=True)
    done.set()


def generate(service: Service, spec: dict[str, Any], shoppers_done: threading.Event | None = None) -> None:
    database, outbox, link = service.database, service.pipeline.outbox, service.link
    store_id = service.config.store.id
    database.write(lambda conn: conn.execute("CREATE TABLE IF NOT EXISTS generated (i INTEGER PRIMARY KEY)"))
    with database.lock:
        row = database.db.conn.execute("SELECT max(i) FROM generated").fetchone()
    first, count = spec.get("first", 0), spec["count"]
    start = first if row[0] is None else max(first, row[0] + 1)
    interval = 1.0 / spec["rate"] if spec.get("rate") else 0.0
    next_at = time.monotonic()
    for i in range(start, first + count):
        now = time.time()
        message = event(i, store_id, now, spec.get("kind", "telemetry"))

        def work(conn: sqlite3.Connection, message: Message = message, i: int = i, now: float = now) -> None:
            outbox.add([message], now)
            conn.execute("INSERT INTO generated VALUES (?)", (i,))

        try:
            database.write(work)
        except DiskFull:
            outbox.refuse([message], now)  # what the pipeline does: numbered, reported as a gap
        link.wake()
        if interval:
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))  # pacing the load, not synchronising
    print("all events generated", flush=True)
    if not spec.get("exit_when_drained"):
        return
    while shoppers_done is not None and (not shoppers_done.is_set() or service.pipeline.core.open_visits):
        time.sleep(0.05)  # the process under test waiting for its shoppers' visits to end
    while outbox.depth() or link.inflight or outbox.held_gaps:
        link.wake()
        time.sleep(0.02)  # the process under test waiting for its own drain
    print("drained", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # stop as systemd does


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    service = Service(config_from_mapping(spec["config"]))
    done = None
    if spec.get("shoppers"):
        done = threading.Event()
        register_shoppers(service, spec["shoppers"]["count"])
        threading.Thread(
            target=walk_shoppers, args=(service, spec["shoppers"], done), name="shoppers", daemon=True
        ).start()
    threading.Thread(target=generate, args=(service, spec, done), name="generator", daemon=True).start()
    return service.run_forever()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

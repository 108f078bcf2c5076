"""The daemon with a generator of known events, as a separate process for fault tests.

``python -m tests.fault_agent SPEC.json`` runs the real ``Service`` (main loop, MQTT link,
scheduler, heartbeat, SIGTERM handling) and a thread that generates events ``E{first}`` ..
``E{first+count-1}`` into its outbox, each in the same transaction as a durable progress mark,
so a restart after ``kill -9`` continues where the killed process stopped.

SPEC keys: ``config`` (the TOML as a mapping), ``first``, ``count``, ``rate`` (events per second,
or null for as fast as possible), ``kind`` (``telemetry``, ``transactional``, or ``mixed``: every
fifth event transactional) and ``exit_when_drained`` (stop like systemd would, with SIGTERM to itself, once
everything is generated and acknowledged). Prints ``all events generated`` and ``drained`` as it gets there.
"""

from __future__ import annotations

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

from edge_agent.core.errors import DiskFull
from edge_agent.core.events import BeaconMessage, BeaconStatus, Message, PurchaseMessage, utc
from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.service import Service


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


def generate(service: Service, spec: dict[str, Any]) -> None:
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
    while outbox.depth() or link.inflight or outbox.held_gaps:
        link.wake()
        time.sleep(0.02)  # the process under test waiting for its own drain
    print("drained", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # stop as systemd does


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # as the CLI does
    service = Service(config_from_mapping(spec["config"]))
    threading.Thread(target=generate, args=(service, spec), name="generator", daemon=True).start()
    return service.run_forever()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))

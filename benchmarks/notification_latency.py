"""Click-and-collect latency: from the sighting that starts a visit to the notification at HQ.

The daemon (``Service``: main loop, SQLite outbox with synchronous=FULL, paho link) runs against
a local mosquitto; 1,000 customers with a ready order arrive one after another (one every
20 ms), each with a single advertisement at the entrance. Latency is taken from the sighting's
timestamp to the moment an HQ subscriber receives the customer notification: mosquitto forwards
a QoS 1 publish to subscribers as it acknowledges it, so on loopback this is the PUBACK time
within a fraction of a millisecond. Two runs: an idle outbox, and an outbox holding 100,000
telemetry events that drain while the customers arrive (notifications must outrank them).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.hq_subscriber import HqSubscriber
from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.events import FootfallMessage, utc
from edge_agent.core.frames import EddystoneEid, encode_eddystone_eid
from edge_agent.core.identity import eid_token
from edge_agent.core.sighting import Sighting
from edge_agent.core.validation import config_from_mapping
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto

ARRIVALS = 1000
SPACING_S = 0.02
BACKLOG = 100_000
K = 10


def _key(index: int) -> bytes:
    return hashlib.blake2b(f"latency:{index}".encode(), digest_size=16).digest()


def _run(
    broker: Mosquitto, workdir: Path, backlog: int, instrument: Callable[[Service], None] | None = None
) -> dict[str, Any]:
    """``instrument``: called with the service before it starts (benchmarks/latency_tail.py
    wraps its methods to time each stage); the figures then carry each arrival's times too."""
    config = config_from_mapping(
        {
            "store": {"id": "lat"},
            "zones": [{"id": "entrance"}],
            "receivers": [{"id": "entrance", "zone": "entrance"}],
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": f"lat-{backlog}"},
            "storage": {"path": str(workdir / f"agent-{backlog}.db")},
            "identity": {"rotation_exponent": K},
            "rules": {"guards": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}},
        }
    )
    service = Service(config)
    now = time.time()
    customers = {
        "schema": "customers.v1", "message_id": "lat-reg",
        "upsert": [{"customer_id": f"c{i}", "identity_key": _key(i).hex(), "consent": {"service": True}}
                   for i in range(ARRIVALS)],
    }  # fmt: skip
    orders = {
        "schema": "orders.v1", "message_id": "lat-ord",
        "orders": [{"order_id": f"O-{i}", "customer_id": f"c{i}", "status": "ready", "pickup_point": "B"}
                   for i in range(ARRIVALS)],
    }  # fmt: skip
    service.pipeline.downlink("retail/v1/stores/lat/in/customers", json.dumps(customers).encode(), now)
    service.pipeline.downlink("retail/v1/stores/lat/in/orders", json.dumps(orders).encode(), now)
    for start in range(0, backlog, 5000):
        filler = [
            FootfallMessage(
                event_id=f"01F{start + n:023d}", store_id="lat", ts=utc(now), interval_start=utc(now - 900),
                interval_end=utc(now), entries=0, exits=0, occupancy=0, customers_recognised=0,
            )
            for n in range(min(5000, backlog - start))
        ]  # fmt: skip
        service.pipeline.outbox.add(filler, now)

    # HQ listens from a process of its own (benchmarks/hq_subscriber.py).
    hq = HqSubscriber(
        broker, workdir / f"hq-{backlog}.log", f"hq-lat-{backlog}", "retail/v1/stores/lat/notifications"
    )

    def received() -> dict[str, float]:
        return {order_id: heard.wall for order_id, heard in hq.received().items()}

    sent: dict[str, float] = {}
    if instrument is not None:
        instrument(service)
    service.start()
    try:
        if not service.link.wait_connected(15):
            raise RuntimeError("the agent did not connect")
        for i in range(ARRIVALS):
            ts = time.time()
            frame = encode_eddystone_eid(EddystoneEid(-20, eid_token(_key(i), K, int(ts))))
            service.submit(
                Sighting(
                    ts, "entrance", "5A:00:00:00:00:01", -55, service_data={EDDYSTONE_SERVICE_UUID: frame}
                )
            )
            sent[f"O-{i}"] = ts
            time.sleep(SPACING_S)  # pacing the arrivals, not synchronisation
        deadline = time.monotonic() + 120
        while len(received()) < ARRIVALS and time.monotonic() < deadline:
            time.sleep(0.05)  # progress poll of a benchmark
        backlog_left = service.pipeline.outbox.depth()
    finally:
        service.stop(5)
        hq.stop()
    heard = received()
    latencies = sorted(1000 * (heard[o] - sent[o]) for o in heard if o in sent)
    return {
        "arrivals": ARRIVALS,
        "delivered": len(latencies),
        "backlog": backlog,
        "telemetry_left_when_done": backlog_left,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))],
        "max_ms": latencies[-1],
        **({"sent": sent, "received": heard} if instrument is not None else {}),
    }


def bench_notification_latency() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-latency-") as workdir:
        broker = Mosquitto(Path(workdir)).start()
        try:
            for backlog, label in ((0, "idle outbox"), (BACKLOG, "100k telemetry draining")):
                figures = _run(broker, Path(workdir), backlog)
                rows.append(
                    {"name": f"sighting -> C&C notification at HQ, p50, {label}", "unit": "ms",
                     "value": figures["p50_ms"], "ratio": None, **figures}
                )  # fmt: skip
                rows.append(
                    {"name": f"sighting -> C&C notification at HQ, p99, {label}", "unit": "ms",
                     "value": figures["p99_ms"], "ratio": None}
                )  # fmt: skip
        finally:
            broker.stop()
    return rows

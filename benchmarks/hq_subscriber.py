"""HQ's side of the latency benchmarks: a subscriber in a process of its own, logging each
click-and-collect notification to a customer as it arrives.

A process of its own: in the agent's, its paho thread took the GIL from the agent's threads
(benchmarks/latency_tail.py measured broker-stage stalls of 25-55 ms while that process kept a
core busy), a cost of the benchmark, not of the store. Each arrival is stamped with both clocks:
``time.time()`` against sightings stamped on the wall clock (``notification_latency``), and
``perf_counter`` (CLOCK_MONOTONIC, the same in every process) against a warped clock's real time
(``week``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from tests.conftest import Mosquitto

_SCRIPT = r"""
import json, sys, time
from datetime import datetime
import paho.mqtt.client as mqtt
host, port, log, client_id, topic = sys.argv[1:6]
out = open(log, "w", buffering=1)
def on_message(client, userdata, message):
    wall, monotonic = time.time(), time.perf_counter()
    try:
        payload = json.loads(message.payload)
        if payload.get("audience") == "customer":
            ts = datetime.fromisoformat(payload["ts"].replace("Z", "+00:00")).timestamp()
            order_id = payload["data"]["order_id"]
            out.write(f"{wall:.6f} {monotonic:.6f} {ts:.6f} {payload['template']} {order_id}\n")
    except (ValueError, KeyError):
        pass
def on_subscribe(client, userdata, mid, reason_codes, properties):
    print("subscribed", flush=True)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
client.on_message = on_message
client.on_subscribe = on_subscribe
client.connect(host, int(port))
client.subscribe(topic, qos=1)
client.loop_forever()
"""


class Heard(NamedTuple):
    """When HQ received a notification (both clocks) and the time the agent dated it with."""

    wall: float
    monotonic: float
    ts: float
    template: str


class HqSubscriber:
    def __init__(self, broker: Mosquitto, log: Path, client_id: str, topic: str) -> None:
        """Started and subscribed to ``topic`` when this returns."""
        self._log = log
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, broker.host, str(broker.port), str(log), client_id, topic],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "subscribed":
            self.stop()
            raise RuntimeError("the HQ subscriber did not subscribe")

    def received(self, template: str | None = None) -> dict[str, Heard]:
        """Order id -> the first customer notification of it HQ received (of ``template``)."""
        heard: dict[str, Heard] = {}
        for line in self._log.read_text().splitlines() if self._log.exists() else []:
            parts = line.split(" ", 4)
            if len(parts) == 5 and (template is None or parts[3] == template):
                heard.setdefault(parts[4], Heard(float(parts[0]), float(parts[1]), float(parts[2]), parts[3]))
        return heard

    def stop(self) -> None:
        self._process.kill()
        self._process.wait()

"""Reloading the TOML: a broken file changes nothing, a good one applies without losing anything."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge_agent.adapters.configfile import load_config
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto, Subscriber, wait_for
from tests.helpers import app_sighting, customers_downlink

BASE = """
[store]
id = "s1"
[[zones]]
id = "entrance"
[[receivers]]
id = "entrance"
zone = "entrance"
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[storage]
path = "{db}"
group_max_delay_s = 0.02
[scheduler]
tick_interval_s = 0.1
heartbeat_interval_s = 0.5
[presence]
absence_timeout_s = {timeout}
"""


def _write(path: Path, port: int, timeout: float, extra: str = "") -> None:
    path.write_text(BASE.format(port=port, db=path.with_suffix(".db"), timeout=timeout) + extra)


def test_reload_keeps_everything_on_a_broken_file_and_applies_a_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config_file = tmp_path / "agent.toml"
    _write(config_file, port=9, timeout=600)  # nothing listens on port 9: events wait in the outbox
    service = Service(load_config(config_file), config_path=config_file)
    service.pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)), time.time()
    )
    service.start()
    try:
        service.submit(app_sighting("c1", time.time()))
        wait_for(lambda: service.pipeline.core.open_visits == 1, 10, "an open visit")
        # The core sees the visit at once; its messages are committed with the group.
        queued = wait_for(service.pipeline.outbox.depth, 10, "the visit's events in the outbox")
        assert queued >= 1
        running = service.config

        config_file.write_text(config_file.read_text().replace("port = 9", "port = 70000\nhots = 'x'"))
        service.request_reload()
        wait_for(lambda: "mqtt.hots: unknown key" in caplog.text, 10, "the rejected reload's errors")
        assert "mqtt.port: must be between 1 and 65535, got 70000" in caplog.text
        assert service.config is running
        assert service.pipeline.core.open_visits == 1
        assert service.pipeline.outbox.depth() == queued

        _write(config_file, port=1884, timeout=0.5)  # a new timeout (live) and a new port (restart)
        service.request_reload()
        wait_for(lambda: "configuration reloaded" in caplog.text, 10, "the reload")
        assert "[mqtt] changed and takes effect at the next restart" in caplog.text
        assert service.config.presence.absence_timeout_s == 0.5
        assert service.config.mqtt.port == 9  # kept until restart
        # The open visit survived the reload and now ends under the new timeout.
        ended = wait_for(
            lambda: [p for p in service.pipeline.outbox.peek_payloads() if p.get("phase") == "ended"],
            10, "the visit to end under the new timeout",
        )  # fmt: skip
        assert ended[0]["customer_id"] == "c1"
        assert service.pipeline.outbox.depth() >= queued + 1
    finally:
        service.stop(5)


@pytest.mark.mqtt
def test_sighup_reloads_the_running_daemon(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: type[Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto)
    config_file = tmp_path / "agent.toml"
    _write(config_file, port=mosquitto.port, timeout=600)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config_file)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(daemon.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any(s["state"] == "online" for s in hq.on("/status")), 15, "the daemon online")
        config_file.write_text(
            config_file.read_text().replace("absence_timeout_s = 600", "absence_timeout_s = -1")
        )
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: any("presence.absence_timeout_s" in line for line in lines), 10, "the rejection")
        assert daemon.poll() is None  # still running on the old configuration
        heartbeats = len(hq.on("/status"))
        wait_for(lambda: len(hq.on("/status")) > heartbeats, 10, "heartbeats after the rejected reload")

        _write(config_file, port=mosquitto.port, timeout=300)
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: any("configuration reloaded" in line for line in lines), 10, "the reload")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(15) == 0

"""What the link tells a technician: an unreachable broker or a lost connection at WARNING with
host, port and the reason in words, rate-limited through an outage, and the same in status.v1."""

from __future__ import annotations

import errno
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.adapters.connection import LinkHealth, disconnect_reason, failure_reason
from edge_agent.adapters.link_stats import LinkStats
from edge_agent.core.clock import Clock
from edge_agent.core.events import StatusMessage
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto, Subscriber, make_config, wait_for

CONNECTION_LOG = "edge_agent.adapters.connection"


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == CONNECTION_LOG and r.levelno == logging.WARNING
    ]


class _ManualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def clock(self) -> Clock:
        return Clock(wall=lambda: 1_764_000_000.0 + self.now, monotonic=lambda: self.now)


def _health(clock: _ManualClock) -> LinkHealth:
    settings = make_config(Path("/nonexistent")).mqtt.model_copy(update={"host": "broker.test", "port": 1884})
    return LinkHealth(settings, LinkStats(), clock.clock())


def test_thirty_failures_in_a_burst_log_one_warning_with_host_port_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _ManualClock()
    health = _health(clock)
    caplog.set_level(logging.DEBUG, CONNECTION_LOG)
    for _ in range(30):
        clock.now += 0.5
        health.unreachable(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))
    assert _warnings(caplog) == [
        "cannot connect to broker broker.test:1884: connection refused (nothing listening on that port); "
        "retrying, events are kept in the outbox"
    ]
    assert health.error == "broker.test:1884: connection refused (nothing listening on that port)"


def test_a_long_outage_logs_once_a_minute_with_the_attempts_since_and_says_when_it_is_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _ManualClock()
    health = _health(clock)
    caplog.set_level(logging.DEBUG, CONNECTION_LOG)
    for _ in range(30):  # 30 attempts, 10 s apart: 290 s of outage
        health.unreachable(TimeoutError("timed out"))
        clock.now += 10
    lines = _warnings(caplog)
    assert len(lines) == 5  # at 0, 60, 120, 180 and 240 s
    assert lines[1] == (
        "still cannot connect to broker broker.test:1884: timed out (no answer from that address) "
        "(6 attempts in the last 60 s)"
    )
    health.connected()
    back = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert back == ["connected to broker broker.test:1884 again after 300 s down (30 failed attempts)"]
    # The next outage starts afresh: its first failure is said at once.
    health.unreachable(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert _warnings(caplog)[-1].startswith(
        "cannot connect to broker broker.test:1884: host name not resolved (Name or service not known)"
    )


def test_a_dropped_connection_is_said_in_words() -> None:
    unspecified = ReasonCode(PacketTypes.DISCONNECT, "Unspecified error")
    shutting_down = ReasonCode(PacketTypes.DISCONNECT, "Server shutting down")
    keepalive = ReasonCode(PacketTypes.DISCONNECT, "Keep alive timeout")
    assert disconnect_reason(unspecified, False, None) == (
        "connection lost (the broker stopped or the network dropped)"
    )
    assert disconnect_reason(shutting_down, True, None) == "closed by the broker (Server shutting down)"
    assert disconnect_reason(keepalive, False, None).startswith("keepalive timeout")
    assert disconnect_reason(unspecified, False, 41.6) == (
        "keepalive timeout (nothing from the broker for 42 s)"
    )
    assert failure_reason(OSError(errno.ENETUNREACH, "Network is unreachable")) == "Network is unreachable"


@pytest.mark.mqtt
def test_an_unreachable_broker_warns_once_in_thirty_attempts_then_says_it_is_back(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "edge_agent")
    broker = mosquitto_factory()  # its port, nothing listening on it yet
    config = make_config(tmp_path, broker, mqtt={"reconnect_min_s": 0.05, "reconnect_max_s": 0.05})
    service = Service(config)
    service.link.start()
    try:
        wait_for(lambda: service.link.stats.connect_failures >= 30, 20, "30 failed connection attempts")
        assert _warnings(caplog) == [
            f"cannot connect to broker 127.0.0.1:{broker.port}: connection refused (nothing listening on "
            "that port); retrying, events are kept in the outbox"
        ]
        assert service.link.state == "down"
        assert (
            service.link.error
            == f"127.0.0.1:{broker.port}: connection refused (nothing listening on that port)"
        )
        status = service.status_message("online")
        assert (status.link, status.link_error) == ("down", service.link.error)
        broker.start()
        assert service.link.wait_connected(10)
        assert any(
            f"connected to broker 127.0.0.1:{broker.port} again after" in r.getMessage()
            for r in caplog.records
        )
        assert service.status_message("online").link == "up"
    finally:
        service.link.stop(1)
        service.database.close()


@pytest.mark.mqtt
def test_a_broker_stop_is_a_warning_in_words_and_the_next_heartbeat_says_what_happened(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    subscriber_factory: Callable[..., Subscriber],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "edge_agent")
    broker = mosquitto_factory(persistence=True).start()
    service = Service(make_config(tmp_path, broker))
    service.start()
    try:
        assert service.link.wait_connected(10)
        first_since = service.status_message("online").since
        assert first_since is not None
        broker.stop()
        wait_for(lambda: service.link.state == "down", 10, "the link to notice")
        lost = wait_for(
            lambda: [m for m in _warnings(caplog) if "disconnected" in m], 10, "the disconnect line"
        )
        assert lost[0] == (
            f"disconnected from broker 127.0.0.1:{broker.port}: connection lost (the broker stopped or the "
            "network dropped); events are queued in the outbox until it reconnects"
        )
        assert "Unspecified error" not in caplog.text
        broker.start()
        hq = subscriber_factory(broker, "retail/v1/stores/s1/status", client_id="late")
        assert service.link.wait_connected(10)
        assert any(f"127.0.0.1:{broker.port} again after" in r.getMessage() for r in caplog.records)
        service._heartbeat()
        beat = wait_for(
            lambda: [s for s in hq.on("/status") if s.get("link") == "up" and s.get("since") != first_since],
            10, "a heartbeat of the new connection",
        )[-1]  # fmt: skip
        message = StatusMessage.model_validate(beat)
        assert message.link_error is not None
        assert message.link_error.startswith(f"127.0.0.1:{broker.port}: ")
        assert message.since is not None
        assert message.since > first_since
        assert message.will is None
    finally:
        service.stop(5)


def test_the_status_fields_are_in_the_exported_schema(tmp_path: Path) -> None:
    from edge_agent.cli import main

    assert main(["schema", "export", str(tmp_path)]) == 0
    schema = json.loads((tmp_path / "schemas" / "status.v1.json").read_text())
    assert {"link", "link_error", "since", "will"} <= set(schema["properties"])

"""HQ's view of a store's link and its own: the last will of a store that died reaches the
reference consumer's store status although MQTT dates it at connect, and ``hq consume`` says
when it starts, connects, loses the broker and gets it back."""

from __future__ import annotations

import contextlib
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.daemon.service import Service
from edge_agent.hq.consumer import HqConsumer
from tests.conftest import Mosquitto, Subscriber, make_config, wait_for

pytestmark = pytest.mark.mqtt

CONSUMER_LOG = "edge_agent.hq.consumer"


@pytest.fixture
def consumer(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[HqConsumer]:
    started = HqConsumer(
        mosquitto.host, mosquitto.port, "reporting", tmp_path / "hq.db", client_id="hq1"
    ).start()
    wait_for(started.subscribed.is_set, 10, "the consumer's SUBACK")
    yield started
    started.stop()


def _store_status(db: Path) -> tuple[str, datetime] | None:
    # Closed at once and read to the end: a reader left open beside the consumer's writer is not
    # what HQ's analysts do, and must not be what the test waits on.
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT state, ts FROM store_status WHERE store_id = 's1'").fetchall()
    return None if not rows else (rows[0][0], datetime.fromisoformat(rows[0][1]))


def test_the_will_of_a_store_that_died_marks_it_offline_though_it_is_dated_at_connect(
    tmp_path: Path, mosquitto: Mosquitto, consumer: HqConsumer, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto, "retail/v1/stores/s1/status")
    service = Service(make_config(tmp_path, mosquitto))
    link = service.link
    link.start()
    try:
        assert link.wait_connected(10)
        # The birth first: a heartbeat asked for before the link thread has sent it would be
        # replaced by the birth (which carries the same, fresher figures).
        wait_for(lambda: [s for s in hq.on("/status") if s["state"] == "online"], 10, "the birth")
        wait_for(lambda: consumer.stats.statuses >= 1, 10, "the birth at HQ")
        link.publish_status()  # a heartbeat of this connection, dated after it was made
        beat = wait_for(
            lambda: [s for s in hq.on("/status") if s["state"] == "online" and s["ts"] != s["since"]],
            10, "a heartbeat after the birth",
        )[-1]  # fmt: skip
        wait_for(
            lambda: _store_status(tmp_path / "hq.db") == ("online", datetime.fromisoformat(beat["ts"])),
            10,
            "HQ's store status",
        )
        # Killed: no goodbye, no DISCONNECT; the broker sees the socket close and publishes the will.
        link._connected.clear()
        link._stopping.set()
        link.wake()
        link._thread.join(5)
        link._client._sock_close()
        will = wait_for(lambda: [s for s in hq.on("/status") if s["state"] == "offline"], 10, "the will")[-1]
    finally:
        service.database.close()
    assert will["will"] is True
    assert will["since"] == will["ts"] == beat["since"]  # dated when the connection was made
    assert will["ts"] < beat["ts"]
    wait_for(
        lambda: (_store_status(tmp_path / "hq.db") or ("",))[0] == "offline", 10, "the store offline at HQ"
    )


def test_a_clean_stop_offline_is_no_will(
    tmp_path: Path, mosquitto: Mosquitto, consumer: HqConsumer, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto, "retail/v1/stores/s1/status")
    service = Service(make_config(tmp_path, mosquitto))
    service.start()
    assert service.link.wait_connected(10)
    service.stop(5)
    goodbye = wait_for(lambda: [s for s in hq.on("/status") if s["state"] == "offline"], 10, "the goodbye")[
        -1
    ]
    assert goodbye.get("will") is None
    wait_for(
        lambda: (_store_status(tmp_path / "hq.db") or ("",))[0] == "offline", 10, "the store offline at HQ"
    )


def _consumer_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == CONSUMER_LOG and r.levelno == level]


def test_the_consumer_says_when_it_starts_loses_the_broker_and_gets_it_back(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, CONSUMER_LOG)
    broker = mosquitto_factory(persistence=True).start()
    consumer = HqConsumer(broker.host, broker.port, "reporting", tmp_path / "hq.db", client_id="hq1").start()
    try:
        wait_for(consumer.subscribed.is_set, 10, "the consumer's SUBACK")
        info = _consumer_lines(caplog, logging.INFO)
        assert (
            info[0]
            == f"hq consumer hq1: group reporting, broker {broker.address}, database {tmp_path / 'hq.db'}"
        )
        assert f"hq consumer hq1: connected to broker {broker.address}, subscribing" in info
        assert "hq consumer hq1: subscribed (shared group reporting)" in info
        broker.stop()
        lost = wait_for(lambda: _consumer_lines(caplog, logging.WARNING), 10, "the disconnect warning")
        assert lost[0].startswith(f"hq consumer hq1: lost broker {broker.address}: ")
        wait_for(lambda: len(_consumer_lines(caplog, logging.WARNING)) >= 2, 15, "a failed reconnection")
        assert _consumer_lines(caplog, logging.WARNING)[1] == (
            f"hq consumer hq1: cannot connect to broker {broker.address}; retrying"
        )
        broker.start()
        wait_for(
            lambda: f"hq consumer hq1: reconnected to broker {broker.address}, subscribing"
            in _consumer_lines(caplog, logging.INFO),
            30, "the reconnection",
        )  # fmt: skip
        wait_for(consumer.subscribed.is_set, 10, "subscribed again")
    finally:
        consumer.stop()
    assert len(_consumer_lines(caplog, logging.WARNING)) == 2  # rate-limited: one line per outage so far


def test_hq_consume_logs_its_start_at_the_default_level(tmp_path: Path, mosquitto: Mosquitto) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "hq", "consume", "--broker", mosquitto.address,
         "--group", "reporting", "--db", str(tmp_path / "hq.db"), "--client-id", "hq-cli"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=_collect, args=(process, lines), daemon=True)
    reader.start()
    try:
        wait_for(
            lambda: any("subscribed (shared group reporting)" in line for line in lines), 20, "subscribed"
        )
        assert any(f"group reporting, broker {mosquitto.address}" in line for line in lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    reader.join(5)
    assert not any("Traceback" in line for line in lines)


def _collect(process: subprocess.Popen[Any], lines: list[str]) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        lines.append(line)

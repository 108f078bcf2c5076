"""HQ's view of a store's link: the last will of a store that died reaches the reference
consumer's store status although MQTT dates it at connect."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from edge_agent.daemon.service import Service
from edge_agent.hq.consumer import HqConsumer
from tests.conftest import Mosquitto, Subscriber, make_config, wait_for

pytestmark = pytest.mark.mqtt


@pytest.fixture
def consumer(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[HqConsumer]:
    started = HqConsumer(
        mosquitto.host, mosquitto.port, "reporting", tmp_path / "hq.db", client_id="hq1"
    ).start()
    wait_for(started.subscribed.is_set, 10, "the consumer's SUBACK")
    yield started
    started.stop()


def _store_status(db: Path) -> tuple[str, datetime] | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT state, ts FROM store_status WHERE store_id = 's1'").fetchone()
    return None if row is None else (row[0], datetime.fromisoformat(row[1]))


def test_the_will_of_a_store_that_died_marks_it_offline_though_it_is_dated_at_connect(
    tmp_path: Path, mosquitto: Mosquitto, consumer: HqConsumer, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto, "retail/v1/stores/s1/status")
    service = Service(make_config(tmp_path, mosquitto))
    link = service.link
    link.start()
    try:
        assert link.wait_connected(10)
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

"""The systemd watchdog: pings only while every part of the daemon makes progress."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.core.liveness import Liveness
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto, make_config


def test_a_part_is_stalled_when_its_last_beat_is_older_than_its_limit() -> None:
    liveness = Liveness()
    liveness.beat("main", 100.0)
    liveness.beat("sender", 90.0)
    assert liveness.stalled(99.0, {"main": 10.0, "sender": 10.0}) == []
    assert liveness.stalled(99.0, {"main": 10.0, "sender": 10.0, "mqtt": 10.0}) == ["mqtt"]  # never beat
    assert liveness.stalled(101.0, {"main": 10.0, "sender": 10.0}) == ["sender"]


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # ping every 0.5 s; a part may stall 5 s
    yield sock
    sock.close()


def _next(sock: socket.socket, wanted: bytes, timeout: float) -> bytes | None:
    """The next datagram containing ``wanted`` within ``timeout`` s of silence, else None."""
    sock.settimeout(timeout)
    try:
        while True:
            message = sock.recv(4096)
            if wanted in message:
                return message
    except TimeoutError:
        return None


@pytest.mark.mqtt
@pytest.mark.parametrize("part", ["sender", "main"])
def test_pings_stop_while_a_part_is_frozen_and_resume_after(
    part: str, tmp_path: Path, mosquitto: Mosquitto, notify_socket: socket.socket
) -> None:
    service = Service(make_config(tmp_path, mosquitto))
    gate = threading.Event()
    service.start()
    try:
        ready = _next(notify_socket, b"READY=1", 10)
        assert ready is not None
        assert b"STATUS=queue=" in ready
        assert service.link.wait_connected(10)
        ping = _next(notify_socket, b"WATCHDOG=1", 10)
        assert ping is not None
        assert b"link=up" in ping

        if part == "sender":
            service.link._process_acks = gate.wait  # the sender thread blocks on its next round
        else:
            service.pipeline.tick = lambda now: gate.wait()  # the main loop blocks on its next tick
        # Pings may still come until the part's 5 s limit passes; then none for 3 s in a row.
        for _ in range(20):
            if _next(notify_socket, b"WATCHDOG=1", 3) is None:
                break
        else:
            pytest.fail(f"pings never stopped with the {part} frozen")

        gate.set()
        assert _next(notify_socket, b"WATCHDOG=1", 10) is not None  # moving again: pings resume
    finally:
        gate.set()
        service.stop(5)
    assert _next(notify_socket, b"STOPPING=1", 5) is not None

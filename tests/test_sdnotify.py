"""sd_notify against real unix datagram sockets, path and abstract, as systemd provides them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.adapters.sdnotify import SystemdNotifier


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = str(tmp_path / "notify.sock")
    sock.bind(name)
    sock.settimeout(5)
    yield name, sock
    sock.close()


def test_messages_reach_a_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    name, sock = path_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": name})
    assert notifier.ready("queue=0 link=up")
    assert sock.recv(4096) == b"READY=1\nSTATUS=queue=0 link=up"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_messages_reach_an_abstract_socket() -> None:
    name = f"edge-agent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    try:
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=stopping"
    finally:
        sock.close()


def test_without_systemd_everything_is_a_quiet_no_op() -> None:
    notifier = SystemdNotifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert notifier.watchdog_s is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    assert not SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).watchdog()


def test_watchdog_interval_is_ours_only_when_meant_for_this_process() -> None:
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000"}).watchdog_s == 30.0
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 30.0
    assert SystemdNotifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_s is None

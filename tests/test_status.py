"""``edge-agent status`` beside a running daemon, and the heartbeat HQ gets with the same figures."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.adapters.configfile import load_config
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto, Subscriber, wait_for
from tests.helpers import app_sighting, customers_downlink


def _status(config_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "status", "--config", str(config_file), *extra],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.mqtt
def test_status_reads_the_running_daemons_figures(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto)
    config_file = tmp_path / "agent.toml"
    config_file.write_text(
        f'[store]\nid = "s1"\n[mqtt]\nport = {mosquitto.port}\n[storage]\npath = "{tmp_path / "agent.db"}"\n'
        '[scheduler]\nheartbeat_interval_s = 0.3\n[[zones]]\nid = "e"\n[[receivers]]\nid = "e"\nzone = "e"\n'
    )
    service = Service(load_config(config_file), config_path=config_file)
    registry = customers_downlink(("c1", True, False)).replace(b'"upsert"', b'"version": 7, "upsert"')
    service.pipeline.downlink("retail/v1/stores/s1/in/customers", registry, time.time())
    service.start()
    try:
        assert service.link.wait_connected(10)
        service.submit(app_sighting("c1", time.time()))
        wait_for(lambda: hq.on("/events/visit"), 10, "the visit at HQ")
        beat = wait_for(
            lambda: [s for s in hq.on("/status")
                     if s["state"] == "online" and s.get("open_visits") == 1 and s.get("last_sync")],
            10, "a heartbeat after the visit reached HQ",
        )[-1]  # fmt: skip
        assert beat["registry_size"] == 1
        assert beat["registry_version"] == 7
        assert beat["queue_by_priority"] is not None
        assert beat["last_sync"] is not None

        status = json.loads(_status(config_file, "--json").stdout)
        assert status["daemon"] == "running"
        assert status["link"] == "up"
        assert status["registry_size"] == 1
        assert status["registry_version"] == 7
        assert status["queue_depth"] == sum(status["queue_by_priority"].values())
        assert status["last_sync_s"] is not None
        assert status["remote"] == {"accepted": 0, "rejected": {}, "unknown_receivers": {}}
        text = _status(config_file).stdout
        assert "link               up" in text
        assert "remote: 0 sightings accepted, 0 messages rejected" in text
    finally:
        service.stop(5)
    # Stopped cleanly: its last snapshot says so at once (a crash ages into "not reporting").
    stopped = json.loads(_status(config_file, "--json").stdout)
    assert (stopped["daemon"], stopped["link"]) == ("stopped", "down")


def test_status_without_a_database_says_so(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[store]\nid = "s1"\n[storage]\npath = "{tmp_path / "none.db"}"\n')
    result = _status(config_file)
    assert result.returncode == 1
    assert "no agent database" in result.stderr


def _figures(snapshot: dict[str, object]) -> dict[str, object]:
    return {
        "queue_by_priority": {"normal": 2}, "queue_depth": 2, "oldest_queued_s": 4.0, "registry_size": 1,
        "registry_version": 7, "snapshot": snapshot,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("heartbeat_age_s", "daemon"),
    [(None, "unknown"), (0.0, "running"), (3.0, "running"), (3.1, "not reporting")],
)
def test_three_missed_heartbeats_mean_the_daemon_is_not_reporting(
    heartbeat_age_s: float | None, daemon: str
) -> None:
    from edge_agent.core.events import utc
    from edge_agent.daemon.statusview import status_view

    now = 1_764_000_000.0
    snapshot = {} if heartbeat_age_s is None else {"ts": utc(now - heartbeat_age_s).isoformat()}
    status = status_view(_figures(snapshot), now, heartbeat_interval_s=1.0, agent_version="9.9")
    assert status["daemon"] == daemon
    assert status["last_heartbeat_s"] == heartbeat_age_s
    assert status["agent_version"] == "9.9"
    assert (status["link"], status["missing_beacons"], status["scanners"]) == ("unknown", [], [])


def test_the_status_view_keeps_its_keys_in_order_and_the_text_one_line_each() -> None:
    from edge_agent.core.events import utc
    from edge_agent.daemon.statusview import status_lines, status_view

    now = 1_764_000_000.0
    snapshot = {
        "ts": utc(now - 2).isoformat(), "last_sync": utc(now - 5).isoformat(), "agent_version": "1.2.3",
        "link": "up", "open_visits": 3, "missing_beacons": ["b1"],
        "scanners": [{"receiver": "e", "adapter": "hci0", "running": False, "mode": "passive",
                      "watchdog_restarts": 2, "errors": 1}],
    }  # fmt: skip
    status = status_view(_figures(snapshot), now, heartbeat_interval_s=30.0, agent_version="9.9")
    assert list(status) == [
        "queue_by_priority", "queue_depth", "oldest_queued_s", "registry_size", "registry_version",
        "agent_version", "last_heartbeat_s", "daemon", "link", "link_error", "last_sync_s", "open_visits",
        "missing_beacons", "scanners", "remote", "clock", "calibration", "integrity", "token_tables",
    ]  # fmt: skip
    lines = status_lines(status)
    assert lines[:4] == [
        "daemon             running",
        "agent_version      1.2.3",
        "link               up",
        "last_sync_s        5.0",
    ]
    assert "queue_by_priority  {'normal': 2}" in lines
    assert lines[-1] == "scanner e/hci0: DOWN, mode passive, 2 restarts, 1 errors"


def test_the_text_view_says_why_a_scanner_is_down_and_counts_remote_sightings() -> None:
    from edge_agent.core.events import utc
    from edge_agent.daemon.statusview import status_lines, status_view

    now = 1_764_000_000.0
    reason = "no D-Bus system bus at unix:path=/run/none (is dbus running? is bluetoothd installed?)"
    snapshot = {
        "ts": utc(now - 2).isoformat(),
        "scanners": [{"receiver": "e", "adapter": "hci0", "running": False, "mode": "active",
                      "watchdog_restarts": 0, "errors": 5, "reason": reason}],
        "remote": {"accepted": 12, "rejected": {"not_json": 1, "clock_skew": 2, "unknown_receiver": 4},
                   "unknown_receivers": {"kitchen": 3, "roof\x1b[2J": 1}},
    }  # fmt: skip
    status = status_view(_figures(snapshot), now, heartbeat_interval_s=30.0, agent_version="9.9")
    assert status["remote"] == snapshot["remote"]
    assert status_lines(status)[-3:] == [
        f"scanner e/hci0: DOWN, mode active, 0 restarts, 5 errors: {reason}",
        "remote: 12 sightings accepted, 7 messages rejected (clock_skew 2, not_json 1, unknown_receiver 4)",
        "remote: messages from receivers not in the configuration: 'kitchen' 3, 'roof\\x1b[2J' 1",
    ]


def test_a_clean_stop_reads_stopped_and_a_link_down_says_why() -> None:
    from edge_agent.core.events import utc
    from edge_agent.daemon.statusview import status_lines, status_view

    now = 1_764_000_000.0
    snapshot = {
        "ts": utc(now - 1).isoformat(), "state": "offline", "link": "down",
        "link_error": "127.0.0.1:1884: connection refused (nothing listening on that port)",
    }  # fmt: skip
    status = status_view(_figures(snapshot), now, heartbeat_interval_s=30.0, agent_version="9.9")
    assert status["daemon"] == "stopped"
    assert status["link_error"] == snapshot["link_error"]
    lines = status_lines(status)
    assert lines[0] == "daemon             stopped"
    assert (
        lines[2]
        == "link               down (127.0.0.1:1884: connection refused (nothing listening on that port))"
    )


def _snapshot_view(service: Service) -> dict[str, object]:
    from edge_agent.daemon.statusview import read_status, status_view

    now = time.time()
    return status_view(read_status(service.config.storage.path, now), now, 3600.0, "9.9")


@pytest.mark.mqtt
def test_the_snapshot_follows_start_connect_disconnect_and_stop_without_waiting_for_a_heartbeat(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    from tests.conftest import make_config

    broker = mosquitto_factory().start()
    # No heartbeat comes in this test: every snapshot below is written by the event itself.
    service = Service(make_config(tmp_path, broker, scheduler={"heartbeat_interval_s": 3600}))
    service.start()
    try:
        assert _snapshot_view(service)["daemon"] == "running"  # written at start
        assert service.link.wait_connected(10)
        wait_for(lambda: _snapshot_view(service)["link"] == "up", 5, "link up in the snapshot on connect")
        broker.stop()
        down = wait_for(
            lambda: (view := _snapshot_view(service))["link"] == "down" and view, 10,
            "link down in the snapshot on disconnect",
        )  # fmt: skip
        assert "connection lost" in str(down["link_error"])
        broker.start()
        wait_for(lambda: _snapshot_view(service)["link"] == "up", 10, "link up again on reconnect")
    finally:
        service.stop(5)
    assert _snapshot_view(service)["daemon"] == "stopped"  # written on stop, at once


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    from edge_agent.adapters.clock import SYSTEM_CLOCK
    from edge_agent.daemon.assembly import assemble

    config_file = tmp_path / "agent.toml"
    config_file.write_text(f'[store]\nid = "s1"\n[storage]\npath = "{tmp_path / "agent.db"}"\n')
    assemble(load_config(config_file), SYSTEM_CLOCK, None).close()  # an agent's database
    # `edge-agent status | head -0`: the reader is gone before the first line is printed.
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "status", "--config", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    process.stdout.close()
    _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr
    assert "BrokenPipe" not in stderr
    assert process.returncode == 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


def test_the_text_view_says_whether_the_clock_is_trusted_its_steps_and_the_phones_estimate() -> None:
    from edge_agent.core.events import utc
    from edge_agent.daemon.statusview import status_lines, status_view

    now = 1_764_000_000.0
    snapshot = {
        "ts": utc(now + 2400.5 - 2).isoformat(),  # dated on agent time, corrected by +2400.5 s
        "remote": {"accepted": 5, "rejected": {"clock_skew": 4}, "unknown_receivers": {},
                   "clock_offsets": {"entrance": 3600.2}},
        "clock": {"trusted": False, "synced": None, "steps": 1, "sources": ["system", "tokens"],
                  "last_step": {"at": "2025-11-24T15:00:00Z", "size_s": -3600.0},
                  "estimated_error_s": 2400.5, "estimate_uncertainty_s": 0.5, "correction_s": 2400.5},
    }  # fmt: skip
    status = status_view(_figures(snapshot), now, heartbeat_interval_s=30.0, agent_version="9")
    assert status["last_heartbeat_s"] == 2.0
    lines = status_lines(status)
    assert lines[-4:] == [
        "remote: 5 sightings accepted, 4 messages rejected (clock_skew 4)",
        "remote: clocks off, sightings re-dated: 'entrance' +3600 s",
        "clock: UNTRUSTED (NTP state unknown), 1 step, last -3600 s at 2025-11-24T15:00:00Z",
        "clock: phones put true time +2400 s (+/- 0 s) from the system clock; correction in force +2400 s",
    ]

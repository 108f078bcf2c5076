"""``edge-agent run`` as a process: HQ's downlinks in, a customer's arrival out, a clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.core.trace import format_trace_line
from tests.conftest import Mosquitto, Subscriber, wait_for
from tests.helpers import app_sighting, customers_downlink, orders_downlink

pytestmark = pytest.mark.mqtt


def _write_config(path: Path, broker: Mosquitto, db: Path) -> None:
    path.write_text(
        f"""
[store]
id = "s1"
timezone = "Europe/Rome"

[[zones]]
id = "entrance"

[[receivers]]
id = "entrance"
zone = "entrance"

[mqtt]
host = "{broker.host}"
port = {broker.port}
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[storage]
path = "{db}"

[scheduler]
tick_interval_s = 0.2
heartbeat_interval_s = 0.5

# The daemon runs on the wall clock: with the default quiet hours (21:00-08:00 in Rome) the
# customer's notification was, rightly, held back whenever CI ran in the evening.
[rules.guards]
quiet_hours_start = "00:00"
quiet_hours_end = "00:00"
"""
    )


def test_daemon_recognises_an_arrival_and_stops_cleanly_on_sigterm(
    tmp_path: Path, mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber]
) -> None:
    hq = subscriber_factory(mosquitto)
    config = tmp_path / "agent.toml"
    _write_config(config, mosquitto, tmp_path / "agent.db")
    # A customer's phone heard every 0.1 s for 20 s from now: the trace source replays it in
    # real time, so its tokens are valid when the sightings reach the core.
    start = time.time()
    trace = tmp_path / "arrival.jsonl"
    trace.write_text("\n".join(format_trace_line(app_sighting("c1", start + i / 10)) for i in range(200)))
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config), "--trace", str(trace)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: any(s["state"] == "online" for s in hq.on("/status")), 15, "the daemon's birth")
        hq.publish("retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, False)))
        hq.publish("retail/v1/stores/s1/in/orders", orders_downlink(("O-7", "c1", "ready")))

        notifications = wait_for(lambda: hq.on("/notifications"), 15, "the click-and-collect notifications")
        wait_for(lambda: len(hq.on("/notifications")) == 2, 5, "customer and staff notifications")
        assert {n["audience"] for n in hq.on("/notifications")} == {"customer", "staff"}
        assert notifications[0]["data"]["order_id"] == "O-7"
        # The main loop built the token windows between sightings, and the next one ahead.
        wait_for(
            lambda: any(
                (s.get("token_tables") or {}).get("ready_windows") == 3
                and s["token_tables"]["windows_built"] >= 4 and s.get("integrity") == "ok"
                for s in hq.on("/status")
            ),
            10, "a heartbeat with every token window ready",
        )  # fmt: skip
        # Notifications outrank the visit event in the outbox: the visit may arrive just after.
        wait_for(lambda: hq.on("/events/visit"), 5, "the visit event")
        assert [v["phase"] for v in hq.on("/events/visit")] == ["started"]
        heartbeats = wait_for(
            lambda: [s for s in hq.on("/status") if s["state"] == "online" and s.get("registry_size") == 1],
            10, "a heartbeat reporting the registry",
        )  # fmt: skip
        assert heartbeats[-1]["queue_depth"] is not None
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            exit_code = daemon.wait(15)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    stderr = daemon.stderr.read() if daemon.stderr else ""
    assert exit_code == 0, stderr
    assert "signal SIGTERM received, stopping" in stderr
    wait_for(lambda: hq.on("/status")[-1]["state"] == "offline", 10, "the offline status")
    assert "Traceback" not in stderr


def test_daemon_refuses_to_start_on_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text('[store]\nid = "s1"\n[mqtt]\nport = 0\n')
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 78
    assert "mqtt.port: must be between 1 and 65535, got 0" in result.stderr


def test_no_token_slice_runs_while_a_notification_is_on_its_way_out(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """A chain's registry keeps the main loop building token windows; a shopper's arrival
    committed meanwhile must not queue behind the slices for the GIL on its way to the link
    thread, so for URGENT_QUIET_S after that commit the loop builds nothing."""
    import hashlib
    import time as clock

    from edge_agent.core.const import URGENT_QUIET_S
    from edge_agent.daemon.service import Service
    from edge_agent.storage.database import Database
    from edge_agent.storage.state import StateStore
    from tests.conftest import make_config
    from tests.helpers import KEYS

    config = make_config(
        tmp_path, mosquitto, rules={"guards": {"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"}}
    )
    database = Database(config.storage.path)
    StateStore(database)
    with database.transaction() as conn:
        conn.executemany(
            "INSERT INTO customers VALUES (?,?,?,?)",
            ((f"bulk-{n}", hashlib.blake2b(n.to_bytes(4, "big"), digest_size=16).digest(), 1, 0)
             for n in range(200_000)),
        )  # fmt: skip
        conn.execute("INSERT INTO customers VALUES (?,?,?,?)", ("c1", KEYS["c1"], 1, 0))
    database.close()
    service = Service(config)
    pipeline = service.pipeline
    pipeline.downlink(
        "retail/v1/stores/s1/in/orders", orders_downlink(("O-7", "c1", "ready")), service.clock.wall()
    )
    slices: list[float] = []
    urgent_at: list[float] = []
    precompute, observe = pipeline.precompute, pipeline.observe

    def timed_precompute(now: float) -> bool:
        slices.append(clock.monotonic())
        return precompute(now)

    def timed_observe(sighting: object) -> bool:
        urgent = observe(sighting)  # type: ignore[arg-type]
        if urgent:
            urgent_at.append(clock.monotonic())
        return urgent

    pipeline.precompute = timed_precompute  # type: ignore[method-assign]
    pipeline.observe = timed_observe  # type: ignore[method-assign]
    service.start()
    try:
        wait_for(lambda: len(slices) > 5, 10, "the windows being built")
        service.submit(app_sighting("c1", service.clock.wall()))
        wait_for(lambda: urgent_at, 10, "the arrival")
        wait_for(lambda: not pipeline.tables_pending, 30, "every window built")
    finally:
        service.stop(10)
    committed = urgent_at[0]
    assert [s for s in slices if s < committed], "no window was being built: the test proves nothing"
    # The flush follows observe at once; a slice may start only once the quiet time is over.
    assert not [s for s in slices if committed < s < committed + 0.9 * URGENT_QUIET_S]

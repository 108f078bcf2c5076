"""A week in a store: seven store days through the daemon at an accelerated clock, 1M customers.

``python -m benchmarks --only week`` (or ``python -m benchmarks.week`` for the JSON alone). The
daemon (``Service``: main loop, SQLite outbox with synchronous=FULL, paho link) runs against a
local mosquitto with 1,000,000 registered customers, on a clock that runs ``RATE`` times faster
than real time while the store is open and much faster at night (wall and monotonic alike, as
a clock that simply runs fast). Each day is the store simulator's (demo store, ``SHOPPERS``
shoppers between ``OPEN_HOURS``, some of them app customers with a click-and-collect order),
plus one extra click-and-collect arrival half a second after every token-window boundary, by a
customer from the million, so arrivals that meet a rotation are measured as such.

Per day: RSS and database size (file + WAL) at the end of the day, sightings/s (the day's
sightings over the real seconds it took), and the p50/p99 latency from a click-and-collect
arrival's sighting (its time on the accelerated clock, mapped back to real time) to an HQ
subscriber receiving the customer notification, for all arrivals and for those on a rotation
boundary. Beside it, the p99 of a bare SQLite commit (one row, WAL, synchronous=FULL) on the same
disk, timed in a separate process every 50 ms during the same day: the floor a durable
notification cannot beat, so a tail can be told from the disk's.

At start: the registry's load from SQLite, and how long after ``Service.start`` the current
token window is usable and all three wanted windows are ready. Over the week: the p99 of every
arrival and of those on a boundary, beside the bare commit's p99 over the same days.

The box's NTP state is part of the workload: on a clock the system does not call synchronised
the agent keeps its token clock ready to search far windows (``core.tokenclock``), which at a
million customers once starved the live windows. ``--clock unsynced`` (the default, and what
``python -m benchmarks --only week`` runs) says "not synchronised" through a flag file that is
absent; ``--clock synced`` creates it.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from benchmarks.hq_subscriber import HqSubscriber
from edge_agent.core.clock import Clock
from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import EddystoneEid, encode_eddystone_eid
from edge_agent.core.identity import eid_token
from edge_agent.core.sighting import Sighting
from edge_agent.daemon.service import Service
from edge_agent.storage.database import Database
from edge_agent.storage.state import StateStore
from edge_agent.tools.simulate import SimulationSettings, StoreDaySimulation, simulate_store_day
from edge_agent.tools.storeday import BEACON_INTERVAL_S, demo_config
from tests.conftest import Mosquitto

CUSTOMERS = 1_000_000
DAYS = 7
RATE = 256.0  # simulated seconds per real second while open: a 4 h day in 56 s, a window in 4 s
NIGHT_RATE = 20_000.0
WARM_UP_S = 3600.0  # simulated time at RATE before each opening (the tables get ready)
OPEN_HOURS = (10, 14)
SHOPPERS = 100
APP_CUSTOMERS = 40
K = 10
FIRST_DAY = date(2026, 11, 23)
TIMEZONE = "Europe/Rome"
PROBE_INTERVAL_S = 0.05

_PROBE = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL"); conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)")
out = open(sys.argv[2], "w", buffering=1)
n = 0
while True:
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE"); conn.execute("INSERT INTO t (v) VALUES (?)", (b"x" * 300,))
    conn.execute("COMMIT")
    out.write(f"{time.time():.4f} {1000 * (time.perf_counter() - start):.3f}\n")
    n += 1
    if n % 1000 == 0:
        conn.execute("DELETE FROM t")
    time.sleep(float(sys.argv[3]))
"""


class WarpClock:
    """A clock that runs ``rate`` times faster than real time, the rate changed as the week goes.

    Segments (real start, simulated start, rate) map a simulated time back to the real moment it
    happened, which is when its sighting was due to be heard.
    """

    def __init__(self, start: float) -> None:
        self._lock = threading.Lock()
        self._segments: list[tuple[float, float, float]] = [(time.perf_counter(), start, 1.0)]
        self._start = start

    def wall(self) -> float:
        real, sim, rate = self._segments[-1]
        return sim + (time.perf_counter() - real) * rate

    def monotonic(self) -> float:
        return self.wall() - self._start + 1000.0

    def set_rate(self, rate: float) -> None:
        with self._lock:
            now_real = time.perf_counter()
            real, sim, old = self._segments[-1]
            self._segments.append((now_real, sim + (now_real - real) * old, rate))

    def real_of(self, sim_ts: float) -> float:
        starts = [segment[1] for segment in self._segments]
        real, sim, rate = self._segments[max(0, bisect.bisect_right(starts, sim_ts) - 1)]
        return real + (sim_ts - sim) / rate

    @property
    def clock(self) -> Clock:
        return Clock(wall=self.wall, monotonic=self.monotonic)


def _key(index: int) -> bytes:
    return hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16).digest()


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _db_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()) / 1e6


def _register(path: Path, days: list[StoreDaySimulation]) -> None:
    """The million, written the way HQ's registry lands (the customers table), fast. Each day's
    app customers are that day's own (ids suffixed: the simulator numbers them alike each day)."""
    database = Database(path)
    StateStore(database)
    rows = ((f"bulk-{i:07d}", _key(i), 1, 0) for i in range(CUSTOMERS))
    day_rows = [
        (c.customer_id + f"-d{d}", c.identity_key, int(c.consent_service), int(c.consent_marketing))
        for d, simulation in enumerate(days)
        for c in simulation.customers
    ]
    with database.transaction() as conn:
        conn.executemany("INSERT INTO customers VALUES (?,?,?,?)", rows)
        conn.executemany("INSERT OR REPLACE INTO customers VALUES (?,?,?,?)", day_rows)
    database.close()


def _window_boundaries(opening: float, closing: float) -> list[float]:
    first = ((int(opening) >> K) + 1) << K
    return [float(b) for b in range(first, int(closing), 1 << K)]


def _boundary_arrivals(boundaries: list[float], first_customer: int) -> list[Sighting]:
    sightings = []
    for n, boundary in enumerate(boundaries):
        index = first_customer + n
        ts = boundary + 0.5
        frame = encode_eddystone_eid(EddystoneEid(-20, eid_token(_key(index), K, int(ts))))
        address = f"5A:{index >> 16 & 0xFF:02X}:{index >> 8 & 0xFF:02X}:{index & 0xFF:02X}:00:01"
        sightings.append(Sighting(ts, "entrance", address, -50, service_data={EDDYSTONE_SERVICE_UUID: frame}))
    return sightings


def _day_stream(simulation: StoreDaySimulation, extra: list[Sighting]) -> Iterator[Sighting]:
    """The simulated day (its positioned fixed beacons included) and ``extra`` sightings, in time order."""
    return heapq.merge(simulation.sightings(), extra, key=lambda s: s.ts)


def _percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def run(workdir: Path, synced: bool = False) -> dict[str, Any]:
    broker = Mosquitto(workdir).start()
    try:
        return _run(workdir, broker, synced)
    finally:
        broker.stop()


def _run(workdir: Path, broker: Mosquitto, synced: bool) -> dict[str, Any]:  # noqa: PLR0912, PLR0915 (one week, in order)
    tz = ZoneInfo(TIMEZONE)
    db_path = workdir / "agent.db"
    flag = workdir / "ntp-synchronized"
    if synced:
        flag.touch()
    config = demo_config(
        {
            "store": {"timezone": TIMEZONE},
            "identity": {"rotation_exponent": K},
            "mqtt": {"host": broker.host, "port": broker.port, "client_id": "week-0001", "keepalive_s": 3600},
            "storage": {"path": str(db_path), "group_max_delay_s": 10.0, "disk_reserve_bytes": 0},
            "scheduler": {"tick_interval_s": 0.25},
            "clock": {"sync_source": f"file:{flag}"},
        }
    )
    guards = config.rules.guards.model_copy(update={"quiet_hours_start": "00:00", "quiet_hours_end": "00:00"})
    config = config.model_copy(update={"rules": config.rules.model_copy(update={"guards": guards})})
    days = [
        simulate_store_day(
            config,
            SimulationSettings(
                shoppers=SHOPPERS,
                seed=d + 1,
                day=FIRST_DAY + timedelta(days=d),
                open_hours=OPEN_HOURS,
                loss=0.1,
                app_share=APP_CUSTOMERS / SHOPPERS,
                beacon_interval_s=BEACON_INTERVAL_S,  # the demo's: one a minute per receiver
                consent_share=0.9,
                advertising_interval_s=4.0,
                collect_zone="counter",
                collect_share=0.25,
            ),
        )
        for d in range(DAYS)
    ]
    register_start = time.perf_counter()
    _register(db_path, days)
    register_s = time.perf_counter() - register_start

    day_hours = [
        (
            datetime(d.year, d.month, d.day, OPEN_HOURS[0], tzinfo=tz).timestamp(),
            datetime(d.year, d.month, d.day, OPEN_HOURS[1], tzinfo=tz).timestamp(),
        )
        for d in (FIRST_DAY + timedelta(days=n) for n in range(DAYS))
    ]
    boundaries = [_window_boundaries(*hours) for hours in day_hours]
    warp = WarpClock(day_hours[0][0] - WARM_UP_S)
    load_start = time.perf_counter()
    service = Service(config, clock=warp.clock)
    load_s = time.perf_counter() - load_start

    orders = []
    bulk_next = 0
    for d, simulation in enumerate(days):
        orders += [
            {"order_id": f"O-{c.customer_id}-d{d}", "customer_id": f"{c.customer_id}-d{d}", "status": "ready",
             "pickup_point": "B", "pickup_zone": "counter"}
            for c in simulation.customers if c.collects
        ]  # fmt: skip
        orders += [
            {"order_id": f"O-bulk-{bulk_next + n}", "customer_id": f"bulk-{bulk_next + n:07d}",
             "status": "ready", "pickup_point": "B"}
            for n in range(len(boundaries[d]))
        ]  # fmt: skip
        bulk_next += len(boundaries[d])
    prefix = f"retail/v1/stores/{config.store.id}"
    service.pipeline.downlink(
        f"{prefix}/in/orders",
        json.dumps({"schema": "orders.v1", "message_id": "week-orders", "orders": orders}).encode(),
        warp.wall(),
    )

    # HQ listens from a process of its own (benchmarks/hq_subscriber.py), stamping arrivals with
    # perf_counter: CLOCK_MONOTONIC, the same in every process, as the warp clock's real time.
    hq = HqSubscriber(broker, workdir / "hq.log", "hq-week", f"{prefix}/notifications")

    def received() -> dict[str, tuple[float, float]]:
        """Order id -> (real arrival, simulated ts of the notification)."""
        return {o: (h.monotonic, h.ts) for o, h in hq.received("cnc.arrival.customer").items()}

    probe_log = workdir / "probe.log"
    probe = subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(workdir / "probe.db"), str(probe_log), str(PROBE_INTERVAL_S)]
    )
    rows: list[dict[str, Any]] = []
    week: dict[str, list[float]] = {"all": [], "boundary": [], "commits": []}
    start: dict[str, float | None] = {"usable_s": None, "all_ready_s": None}
    warp.set_rate(RATE)
    started = time.perf_counter()
    service.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and start["all_ready_s"] is None:
            ready = service.pipeline.core.token_tables["ready_windows"]
            if ready >= 1 and start["usable_s"] is None:
                start["usable_s"] = time.perf_counter() - started
            if ready >= 3:
                start["all_ready_s"] = time.perf_counter() - started
            time.sleep(0.01)  # progress poll of a benchmark
        bulk_next = 0
        for d, simulation in enumerate(days):
            opening, closing = day_hours[d]
            while warp.wall() < opening - 5:
                time.sleep(0.01)  # the warm-up hour before opening runs at RATE
            extra = _boundary_arrivals(boundaries[d], bulk_next)
            boundary_orders = {f"O-bulk-{bulk_next + n}" for n in range(len(extra))}
            bulk_next += len(extra)
            # A collector without service consent is never recognised, so never notified: as it must.
            day_orders = {
                f"O-{c.customer_id}-d{d}" for c in simulation.customers if c.collects and c.consent_service
            }
            day_orders |= boundary_orders
            day_start_real, day_start_wall = time.perf_counter(), time.time()
            unready_before = service.pipeline.core.token_tables["rotations_unready"]
            sightings = 0
            for sighting in _day_stream(simulation, extra):
                delay = (sighting.ts - warp.wall()) / RATE
                if delay > 0.002:
                    time.sleep(delay)  # pacing the day on the accelerated clock
                service.submit(sighting)
                sightings += 1
            while warp.wall() < closing + 1800:  # the last visits end (absence timeout)
                time.sleep(0.01)
            day_s = time.perf_counter() - day_start_real
            wait_until = time.monotonic() + 30
            while time.monotonic() < wait_until and not day_orders <= received().keys():
                time.sleep(0.05)  # progress poll of a benchmark
            day_end_wall = time.time()
            heard = {o: v for o, v in received().items() if o in day_orders}
            latencies = {o: 1000 * (real - warp.real_of(ts)) for o, (real, ts) in heard.items()}
            commits = [
                float(ms) for line in probe_log.read_text().splitlines() if len(parts := line.split()) == 2
                for stamp, ms in [parts] if day_start_wall <= float(stamp) <= day_end_wall
            ]  # fmt: skip
            on_boundary = [v for o, v in latencies.items() if o in boundary_orders]
            week["all"] += latencies.values()
            week["boundary"] += on_boundary
            week["commits"] += commits
            rows.append(
                {
                    "day": d + 1,
                    "rss_mb": round(_rss_mb(), 1),
                    "db_mb": round(_db_mb(db_path), 2),
                    "sightings": sightings,
                    "sightings_per_s": round(sightings / day_s),
                    "arrivals": len(day_orders),
                    "delivered": len(latencies),
                    "p50_ms": _percentile(list(latencies.values()), 0.5),
                    "p99_ms": _percentile(list(latencies.values()), 0.99),
                    "boundary_arrivals": len(boundary_orders),
                    "boundary_p99_ms": _percentile(on_boundary, 0.99),
                    "boundary_max_ms": max(on_boundary, default=None),
                    "bare_commit_p50_ms": _percentile(commits, 0.5),
                    "bare_commit_p99_ms": _percentile(commits, 0.99),
                    "rotations_unready": service.pipeline.core.token_tables["rotations_unready"]
                    - unready_before,
                    "far_windows_built": service.pipeline.core.token_tables["far_windows_built"],
                    "queue_depth": service.pipeline.outbox.depth(),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            if d + 1 < DAYS:
                warp.set_rate(NIGHT_RATE)
                while warp.wall() < day_hours[d + 1][0] - WARM_UP_S:
                    time.sleep(0.005)
                warp.set_rate(RATE)
    finally:
        service.stop(10)
        hq.stop()
        probe.kill()
        probe.wait()
    return {
        "customers": CUSTOMERS,
        "clock": "synced" if synced else "unsynced",
        "register_s": register_s,
        "registry_load_s": load_s,
        "tables_usable_s": start["usable_s"],
        "tables_all_ready_s": start["all_ready_s"],
        "arrivals": len(week["all"]),
        "arrival_p99_ms": _percentile(week["all"], 0.99),
        "boundary_arrivals": len(week["boundary"]),
        "boundary_p99_ms": _percentile(week["boundary"], 0.99),
        "bare_commit_p99_ms": _percentile(week["commits"], 0.99),
        "days": rows,
    }


def bench_week() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="edge-agent-week-") as workdir:
        figures = run(Path(workdir))
    days = figures["days"]
    rows: list[dict[str, Any]] = [
        {"name": "week: tables usable after start, 1M customers", "unit": "s",
         "value": figures["tables_usable_s"] or float("nan"), "ratio": None,
         **{k: v for k, v in figures.items() if k != "days"}},
    ]  # fmt: skip
    for day in days:
        rows.append(
            {"name": f"week day {day['day']}: C&C arrival p99 (bare commit p99 beside)", "unit": "ms",
             "value": day["p99_ms"] if day["p99_ms"] is not None else float("nan"),
             "ratio": None if not day["bare_commit_p99_ms"] else day["p99_ms"] / day["bare_commit_p99_ms"],
             **day}
        )  # fmt: skip
    rows.append(
        {"name": "week: C&C arrival p99, every day (bare commit p99 beside)", "unit": "ms",
         "value": figures["arrival_p99_ms"] or float("nan"),
         "ratio": None if not (figures["bare_commit_p99_ms"] and figures["arrival_p99_ms"])
         else figures["arrival_p99_ms"] / figures["bare_commit_p99_ms"],
         "boundary_p99_ms": figures["boundary_p99_ms"], "bare_commit_p99_ms": figures["bare_commit_p99_ms"]}
    )  # fmt: skip
    if len(days) >= 2:
        last, second = days[-1], days[1]
        rows.append(
            {"name": "week: RSS day 7 vs day 2", "unit": "MB", "value": last["rss_mb"],
             "ratio": last["rss_mb"] / second["rss_mb"]}
        )  # fmt: skip
        rows.append(
            {"name": "week: database day 7 vs day 2", "unit": "MB", "value": last["db_mb"],
             "ratio": last["db_mb"] / second["db_mb"]}
        )  # fmt: skip
    return rows


def main() -> int:
    global CUSTOMERS, DAYS
    import argparse

    parser = argparse.ArgumentParser(prog="python -m benchmarks.week")
    parser.add_argument("--customers", type=int, default=CUSTOMERS)
    parser.add_argument("--days", type=int, default=DAYS)
    parser.add_argument("--clock", choices=("unsynced", "synced"), default="unsynced",
                        help="what the system says of its NTP state (default: not synchronised)")  # fmt: skip
    args = parser.parse_args()
    CUSTOMERS, DAYS = args.customers, args.days
    with tempfile.TemporaryDirectory(prefix="edge-agent-week-") as workdir:
        json.dump(run(Path(workdir), synced=args.clock == "synced"), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

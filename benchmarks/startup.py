"""What a start costs at chain scale: the integrity check of a 400 MB file, the token tables.

``python -m benchmarks --only startup`` (or ``python -m benchmarks.startup`` for JSON).

- Integrity: a 400 MB agent database (the outbox table of a long outage, with its indexes) is
  written, synced and evicted from the page cache (``posix_fadvise(DONTNEED)``, so the read is
  cold, as after a boot); then ``Database(path)`` is timed (it waits ``START_CHECK_S`` for the
  check) against the moment the same check, gone on in the background, has read the whole
  file: what the start used to wait for.
- Token tables: 1,000,000 customers in a sliced resolver (the daemon's), driven slice by slice
  as the main loop drives it when idle: seconds until the current window is usable and until
  all three wanted windows are ready, and the longest slice (a sighting's worst wait).
- The daemon's start: an agent database holding 1,000,000 customers (evicted from the page
  cache), then ``Service`` constructed and started against a local mosquitto, all timed from
  the start of the construction: registry loaded (construction done: database open, registry
  read from SQLite), then the current window usable and all three wanted windows ready as the
  main loop builds them. What a restart costs before phones are recognised again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.core.identity import TokenResolver
from edge_agent.core.registry import Customer
from edge_agent.daemon.service import Service
from edge_agent.storage.database import START_CHECK_S, Database
from edge_agent.storage.state import StateStore
from edge_agent.tools.storeday import demo_config
from tests.conftest import Mosquitto

FILE_MB = 400
CUSTOMERS = 1_000_000
NOW = 1_764_000_000.0


def _evict(path: Path) -> None:
    """Drop the file's pages from the page cache: the next read comes from the disk."""
    for suffix in ("", "-wal", "-shm"):
        target = Path(f"{path}{suffix}")
        if target.exists():
            fd = os.open(target, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _big_file(path: Path) -> None:
    Database(path).close()  # the agent's pragmas (WAL, incremental auto-vacuum)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("CREATE TABLE IF NOT EXISTS backlog (id INTEGER PRIMARY KEY, topic TEXT, payload BLOB)")
    conn.execute("CREATE INDEX IF NOT EXISTS backlog_topic ON backlog (topic, id)")
    payload = os.urandom(700)
    row = 0
    while path.stat().st_size < FILE_MB * 1_000_000:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO backlog (topic, payload) VALUES (?, ?)",
            ((f"retail/v1/stores/s1/events/footfall/{(row + n) % 97}", payload) for n in range(20_000)),
        )
        conn.execute("COMMIT")
        row += 20_000
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def integrity(workdir: Path) -> dict[str, Any]:
    path = workdir / "agent.db"
    _big_file(path)
    size_mb = path.stat().st_size / 1e6
    _evict(path)
    start = time.perf_counter()
    database = Database(path)
    open_s = time.perf_counter() - start
    state = database.integrity
    result = database.wait_integrity(600)  # the same check, finishing in the background
    full_s = time.perf_counter() - start
    database.close()
    return {
        "file_mb": round(size_mb, 1),
        "start_check_budget_s": START_CHECK_S,
        "open_with_bounded_check_s": open_s,
        "integrity_after_open": state,
        "full_check_done_after_s": full_s,
        "full_check_result": result,
    }


def token_tables() -> dict[str, Any]:
    resolver = TokenResolver(10, 1, cipher=fastest_cipher(), sliced=True)
    for index in range(CUSTOMERS):
        key = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16).digest()
        resolver.put(Customer(f"bulk-{index:07d}", key, consent_service=True))
    start = time.perf_counter()
    resolver.advance(NOW)
    usable = all_ready = None
    durations: list[float] = []
    while True:
        began = time.perf_counter()
        more = resolver.precompute()
        durations.append(time.perf_counter() - began)
        if usable is None and resolver.ready_windows >= 1:
            usable = time.perf_counter() - start
        if all_ready is None and resolver.ready_windows >= 3:
            all_ready = time.perf_counter() - start
        if not more:
            break
    ahead = time.perf_counter() - start
    return {
        "customers": CUSTOMERS,
        "current_window_usable_s": usable,
        "all_wanted_windows_s": all_ready,
        "with_the_one_ahead_s": ahead,
        "slices": len(durations),
        "slice_p99_ms": 1000 * sorted(durations)[int(0.99 * (len(durations) - 1))],
        "longest_slice_ms": 1000 * max(durations),
    }


def _key(index: int) -> bytes:
    return hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16).digest()


def _registry_file(path: Path) -> None:
    """The million as HQ's registry lands them (the customers table); one in 50 without consent."""
    database = Database(path)
    StateStore(database)
    rows = ((f"bulk-{i:07d}", _key(i), int(i % 50 != 7), int(i % 3 == 0)) for i in range(CUSTOMERS))
    with database.transaction() as conn:
        conn.executemany("INSERT INTO customers VALUES (?,?,?,?)", rows)
    database.close()


def service_start(workdir: Path) -> dict[str, Any]:
    """Seconds from the start of ``Service`` construction to the registry loaded, the current
    window usable and all three wanted windows ready, with 1M customers kept in SQLite."""
    db_path = workdir / "agent.db"
    _registry_file(db_path)
    _evict(db_path)
    broker = Mosquitto(workdir).start()
    try:
        config = demo_config(
            {
                "mqtt": {"host": broker.host, "port": broker.port, "client_id": "startup-0001"},
                "storage": {"path": str(db_path), "disk_reserve_bytes": 0},
            }
        )
        started = time.perf_counter()
        service = Service(config)
        loaded = time.perf_counter() - started
        usable = all_ready = None
        service.start()
        try:
            deadline = time.perf_counter() + 120
            while time.perf_counter() < deadline and all_ready is None:
                ready = service.pipeline.core.token_tables["ready_windows"]
                if ready >= 1 and usable is None:
                    usable = time.perf_counter() - started
                if ready >= 3:
                    all_ready = time.perf_counter() - started
                time.sleep(0.005)  # progress poll of a benchmark
            registered = len(service.pipeline.core.customers)
        finally:
            service.stop()
    finally:
        broker.stop()
    return {
        "customers": registered,
        "registry_loaded_s": loaded,
        "current_window_usable_s": usable,
        "all_wanted_windows_s": all_ready,
    }


def bench_startup() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(
        prefix="edge-agent-startup-", dir=os.environ.get("BENCH_DIR")
    ) as workdir:
        checked = integrity(Path(workdir))
    tables = token_tables()
    with tempfile.TemporaryDirectory(
        prefix="edge-agent-startup-", dir=os.environ.get("BENCH_DIR")
    ) as workdir:
        daemon = service_start(Path(workdir))
    return [
        {"name": f"start: open a {checked['file_mb']:.0f} MB database, cold, bounded check", "unit": "s",
         "value": checked["open_with_bounded_check_s"],
         "ratio": checked["open_with_bounded_check_s"] / checked["full_check_done_after_s"], **checked},
        {"name": "  full quick_check of the same file, cold (now in the background)", "unit": "s",
         "value": checked["full_check_done_after_s"], "ratio": None},
        {"name": "start: 1M customers, current token window usable", "unit": "s",
         "value": tables["current_window_usable_s"], "ratio": None, **tables},
        {"name": "  all three wanted windows ready", "unit": "s", "value": tables["all_wanted_windows_s"],
         "ratio": None},
        {"name": "  slice p99 (a sighting's wait while tables build)", "unit": "ms",
         "value": tables["slice_p99_ms"], "ratio": None},
        {"name": "  longest slice", "unit": "ms", "value": tables["longest_slice_ms"], "ratio": None},
        {"name": "daemon start, 1M customers in SQLite: registry loaded", "unit": "s",
         "value": daemon["registry_loaded_s"], "ratio": None, **daemon},
        {"name": "  current token window usable (from Service construction)", "unit": "s",
         "value": daemon["current_window_usable_s"] or float("nan"), "ratio": None},
        {"name": "  all three wanted windows ready (from Service construction)", "unit": "s",
         "value": daemon["all_wanted_windows_s"] or float("nan"), "ratio": None},
    ]  # fmt: skip


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edge-agent-startup-") as workdir:
        figures = {"integrity": integrity(Path(workdir)), "token_tables": token_tables()}
    with tempfile.TemporaryDirectory(prefix="edge-agent-startup-") as workdir:
        figures["daemon_start"] = service_start(Path(workdir))
    json.dump(figures, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

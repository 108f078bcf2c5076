"""HQ under a fleet: end-to-end messages/s and outbox -> HQ database latency for N stores.

Against a local mosquitto (and a PostgreSQL server) started for the purpose, all on this machine:
- sweep: each N of ``SIZES`` runs twice with two HQ consumer instances on one SQLite file:
  paced (10 events per store per second for 10 s: latency at a realistic load) and a burst of
  100 events per store (the backlog after an outage: capacity);
- backends: ``BACKEND_STORES`` stores, paced and a burst of 200 a store, into SQLite with one consumer beside
  PostgreSQL with 1, 2 and 4 consumer instances in one group, each run into a fresh database.
  Each row also says where the CPU went (consumers, stores, mosquitto, PostgreSQL), the way to
  tell where the limit is on a machine whose cores all of them share.
See ``edge_agent.tools.fleet``; the CLI equivalent is ``edge-agent simulate-fleet [--db URL]``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_agent.tools.fleet import FleetResult, run_fleet
from tests.conftest import Mosquitto, Postgres  # the test suite's launchers: the same settings

SIZES = (10, 50, 200)
MODES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("paced 10/s/store", {"rate": 10.0, "seconds": 10.0}),
    ("burst 100/store", {"burst": 100}),
)
BACKEND_STORES = 100
# 200 a store: 20,000 events, a few seconds of draining (100 a store was over in two).
BACKEND_MODES: tuple[tuple[str, dict[str, Any]], ...] = (MODES[0], ("burst 200/store", {"burst": 200}))
BACKENDS: tuple[tuple[str, int], ...] = (
    ("sqlite", 1),
    ("postgresql", 1),
    ("postgresql", 2),
    ("postgresql", 4),
)
_TICK_S = os.sysconf("SC_CLK_TCK")


def bench_fleet() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-fleet-broker-") as workdir:
        broker = Mosquitto(Path(workdir)).start()
        postgres = Postgres().start()
        try:
            for stores in SIZES:
                for mode, kwargs in MODES:
                    result = run_fleet(broker.host, broker.port, stores, **kwargs)
                    rows += _rows(f"fleet N={stores}, {mode}", mode, result, {})
            for mode, kwargs in BACKEND_MODES:
                for backend, consumers in BACKENDS:
                    url = None
                    if backend == "postgresql":
                        url = postgres.create_database(f"fleet_{consumers}_{time.monotonic_ns():x}")
                    before = _cpu(broker), _postgres_cpu(postgres.pid)
                    result = run_fleet(broker.host, broker.port, BACKEND_STORES, consumers=consumers, db=url,
                                       **kwargs)  # fmt: skip
                    cpu = {"mosquitto_cpu_s": _cpu(broker) - before[0],
                           "postgres_cpu_s": _postgres_cpu(postgres.pid) - before[1]}  # fmt: skip
                    name = f"fleet N={BACKEND_STORES} {backend} x{consumers}, {mode}"
                    rows += _rows(name, mode, result, {"backend": backend, **cpu})
        finally:
            postgres.stop()
            broker.stop()
    return rows


def _rows(name: str, mode: str, result: FleetResult, extra: dict[str, Any]) -> list[dict]:
    return [
        {"name": f"{name}: end to end", "unit": "msg/s", "value": result.messages_per_s, "ratio": None,
         "mode": mode, **dataclasses.asdict(result), **extra},
        {"name": f"{name}: p99 outbox -> HQ db", "unit": "ms", "value": result.latency_p99_ms, "ratio": None},
    ]  # fmt: skip


def _ticks(pid: int, children: bool = False) -> int:
    """utime + stime of ``pid`` (with ``children``: also of its children that ended)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11 : 15 if children else 13])


def _cpu(broker: Mosquitto) -> float:
    assert broker._process is not None  # started
    return _ticks(broker._process.pid) / _TICK_S


def _postgres_cpu(postmaster: int) -> float:
    """CPU seconds of the server: the postmaster, its live processes, those that ended (the
    backends of consumers that disconnected)."""
    live = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == postmaster:
            live += int(fields[11]) + int(fields[12])
    return (_ticks(postmaster, children=True) + live) / _TICK_S

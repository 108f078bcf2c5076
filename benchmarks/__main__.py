"""Benchmarks: ``python -m benchmarks`` (or ``make bench``). Prints a table, writes JSON.

Each figure is paired with a baseline measured in the same run on the same data, so the ratio
means something on whatever machine runs it:
- core: sightings/s through decode -> resolve -> track, against decoding alone;
- replay: sightings/s through the whole pipeline with the SQLite outbox, against the core alone;
- outbox: events/s enqueued in grouped commits (synchronous=FULL), against raw sqlite3
  ``executemany`` of the same rows into the same table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from edge_agent.core import StoreCore
from edge_agent.demo import demo_config
from edge_agent.downlinks import parse_downlink
from edge_agent.events import VisitMessage, utc
from edge_agent.frames import decode_sighting
from edge_agent.ids import EventIdFactory
from edge_agent.outbox import Outbox
from edge_agent.pipeline import Pipeline
from edge_agent.simclock import SimulatedRun
from edge_agent.storage import Database
from edge_agent.storeday import generate
from edge_agent.topics import Topics

RESULTS = Path(__file__).resolve().parent / "results"


def _best_of(repeats: int, run: Callable[[], int]) -> tuple[float, int]:
    """Best wall time over ``repeats`` runs (least disturbed by the rest of the machine)."""
    best = float("inf")
    count = 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    return best, count


def bench_core(repeats: int) -> list[dict]:
    config = demo_config()
    day = generate(seed=7)

    def decode_only() -> int:
        for sighting in day.sightings:
            decode_sighting(sighting)
        return len(day.sightings)

    def core() -> int:
        core = StoreCore(config, EventIdFactory.seeded("bench"))
        for kind, payload in day.downlinks:
            core.apply(parse_downlink(kind, payload))
        for sighting in day.sightings:
            core.observe(sighting)
        return len(day.sightings)

    base_s, n = _best_of(repeats, decode_only)
    core_s, _ = _best_of(repeats, core)
    return [
        {"name": "decode only (baseline)", "unit": "sightings/s", "value": n / base_s, "ratio": 1.0},
        {
            "name": "core: decode+resolve+track",
            "unit": "sightings/s",
            "value": n / core_s,
            "ratio": base_s / core_s,
        },
    ]


def bench_replay(repeats: int) -> list[dict]:
    config = demo_config()
    day = generate(seed=7)

    def pipeline_run() -> int:
        with tempfile.TemporaryDirectory() as workdir:
            settings = config.model_copy(
                update={"storage": config.storage.model_copy(update={"path": Path(workdir) / "b.db"})}
            )
            database = Database(settings.storage.path)
            pipeline = Pipeline(settings, database, EventIdFactory.seeded("bench"))
            for kind, payload in day.downlinks:
                pipeline.downlink(pipeline.topics.downlink(kind), payload, day.sightings[0].ts)
            driver = SimulatedRun(pipeline)
            driver.feed(day.sightings)
            driver.finish()
            database.close()
        return len(day.sightings)

    seconds, n = _best_of(repeats, pipeline_run)
    return [
        {
            "name": "replay: pipeline + SQLite outbox",
            "unit": "sightings/s",
            "value": n / seconds,
            "ratio": None,
        }
    ]


def bench_outbox(repeats: int, events: int = 50_000, group: int = 500) -> list[dict]:
    messages = [
        VisitMessage(event_id=f"{i:026d}", store_id="s1", ts=utc(i), visit_id=f"v{i}", customer_id="c",
                     phase="started", started_at=utc(i), entry_receiver="entrance")
        for i in range(events)
    ]  # fmt: skip
    topics = Topics("retail/v1", "s1")
    rows = [(topics.uplink(m.stream), m.to_json(), m.priority, 0, 0.0, None) for m in messages]

    def raw() -> int:
        with tempfile.TemporaryDirectory() as workdir:
            database = Database(Path(workdir) / "raw.db")
            Outbox(database, topics)  # same schema and indexes
            conn = sqlite3.connect(Path(workdir) / "raw.db", isolation_level=None)
            conn.execute("PRAGMA synchronous=FULL")
            for start in range(0, events, group):
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO outbox (topic, payload, priority, retain, created, expires) "
                    "VALUES (?,?,?,?,?,?)",
                    rows[start : start + group],
                )
                conn.execute("COMMIT")
            conn.close()
            database.close()
        return events

    def ours() -> int:
        with tempfile.TemporaryDirectory() as workdir:
            database = Database(Path(workdir) / "ours.db")
            outbox = Outbox(database, topics)
            for start in range(0, events, group):
                outbox.add(messages[start : start + group], now=0.0)
            database.close()
        return events

    raw_s, n = _best_of(repeats, raw)
    ours_s, _ = _best_of(repeats, ours)
    return [
        {"name": f"raw sqlite3 executemany, groups of {group} (baseline)", "unit": "events/s",
         "value": n / raw_s, "ratio": 1.0},
        {"name": f"Outbox.add incl. JSON serialisation, groups of {group}", "unit": "events/s",
         "value": n / ours_s, "ratio": raw_s / ours_s},
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    results = {
        "core": bench_core(args.repeats),
        "replay": bench_replay(args.repeats),
        "outbox": bench_outbox(args.repeats),
    }
    print(f"{'benchmark':<58} {'value':>14} {'unit':<12} {'vs baseline':>11}")
    for rows in results.values():
        for row in rows:
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            print(f"{row['name']:<58} {row['value']:>14,.0f} {row['unit']:<12} {ratio:>11}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "repeats": args.repeats}
    args.output.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks: ``python -m benchmarks`` (or ``make bench``). Prints a table, writes JSON.

Each figure is paired with a baseline measured in the same run on the same data, so the ratio
means something on whatever machine runs it:
- core: sightings/s through decode -> resolve -> track, against decoding alone;
- replay: sightings/s through the whole pipeline with the SQLite outbox, against the core alone;
- outbox: events/s enqueued in grouped commits (synchronous=FULL), against raw sqlite3
  ``executemany`` of the same rows into the same table; messages/s drained to a local mosquitto
  at QoS 1, against a bare paho publish loop of the same messages (benchmarks/outbox.py);
- backlog: 1,000,000 queued telemetry events draining while notifications keep outranking them
  (benchmarks/outbox.py);
- decoders: frames/s per frame type, against bluetooth-data-tools' GAP parser on the same
  advertisements as raw bytes (it turns AD bytes into the dicts our decoders start from; a
  layer below ours, and the fastest Python-ecosystem parser we know, compiled with Cython);
- identity: decode -> resolve -> presence with 100k and 1M registered customers, window rebuild
  time and RSS, each size in its own process (benchmarks/identity_scale.py);
- accuracy: visit precision/recall and zone-time accuracy on the simulated acceptance day per
  RSSI filter, against no filter (benchmarks/accuracy.py).
- calibration: core throughput with receivers' calibration on against off in the same run, and
  zone-time accuracy with receivers off by up to +-6 dB: uncalibrated, calibrated, true config,
  three seeds; a -8 dB drift against the same day without (benchmarks/calibration.py).
- fleet: N = 10, 50, 200 virtual stores against a local mosquitto with HQ consumers: messages/s
  end to end and p99 latency from store outbox to HQ database (benchmarks/fleet.py).
- latency: sighting that starts a visit -> click-and-collect notification at HQ, 1,000
  arrivals, idle outbox and with 100k telemetry draining (benchmarks/notification_latency.py).
``--only GROUP ...`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from benchmarks.accuracy import bench_accuracy
from benchmarks.calibration import bench_calibration
from benchmarks.fleet import bench_fleet
from benchmarks.notification_latency import bench_notification_latency
from benchmarks.outbox import bench_backlog, bench_drain, bench_enqueue
from edge_agent.adapters.aes_openssl import fastest_cipher
from edge_agent.adapters.clock import SYSTEM_CLOCK
from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.downlinks import parse_downlink
from edge_agent.core.frames import (
    AltBeacon,
    EddystoneEid,
    EddystoneTlm,
    EddystoneUid,
    EddystoneUrl,
    IBeacon,
    decode_advertisement,
    decode_sighting,
    encode_altbeacon,
    encode_apple_overflow,
    encode_eddystone_eid,
    encode_eddystone_tlm,
    encode_eddystone_uid,
    encode_eddystone_url,
    encode_ibeacon,
)
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.store import StoreCore
from edge_agent.daemon.assembly import assemble, offline_copy
from edge_agent.tools.demo import demo_config
from edge_agent.tools.simclock import SimulatedRun
from edge_agent.tools.storeday import generate

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
        core = StoreCore(config, EventIdFactory.seeded("bench"), fastest_cipher())
        for kind, payload in day.downlinks:
            core.apply(parse_downlink(kind, payload), day.sightings[0].ts)
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
            offline = offline_copy(config, Path(workdir) / "b.db")
            agent = assemble(offline, SYSTEM_CLOCK, None, ids=EventIdFactory.seeded("bench"))
            pipeline = agent.pipeline
            for kind, payload in day.downlinks:
                pipeline.downlink(pipeline.topics.downlink(kind), payload, day.sightings[0].ts)
            driver = SimulatedRun(pipeline)
            driver.feed(day.sightings)
            driver.finish()
            agent.close()
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


def _advertisements(kind: str, count: int, rng: random.Random) -> list[tuple[dict, dict, bytes]]:
    """``count`` distinct advertisements of one frame type: (manufacturer, service, raw AD bytes)."""
    ads = []
    for _ in range(count):
        manufacturer: dict[int, bytes] = {}
        service: dict[str, bytes] = {}
        if kind == "iBeacon":
            beacon_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
            company, data = encode_ibeacon(
                IBeacon(beacon_uuid, rng.randrange(65536), rng.randrange(65536), -59)
            )
            manufacturer[company] = data
        elif kind == "AltBeacon":
            company, data = encode_altbeacon(AltBeacon(0x0118, rng.randbytes(20), -59, 0))
            manufacturer[company] = data
        elif kind == "Eddystone-UID":
            service[EDDYSTONE_SERVICE_UUID] = encode_eddystone_uid(
                EddystoneUid(-20, rng.randbytes(10), rng.randbytes(6))
            )
        elif kind == "Eddystone-URL":
            service[EDDYSTONE_SERVICE_UUID] = encode_eddystone_url(
                EddystoneUrl(-20, f"https://ex.com/{rng.randrange(10**9)}")
            )
        elif kind == "Eddystone-TLM":
            tlm = EddystoneTlm(
                rng.randrange(2000, 3300), rng.randrange(-2000, 8000) / 256, rng.randrange(2**32), 1.0
            )
            service[EDDYSTONE_SERVICE_UUID] = encode_eddystone_tlm(tlm)
        elif kind == "Eddystone-EID":
            service[EDDYSTONE_SERVICE_UUID] = encode_eddystone_eid(EddystoneEid(-20, rng.randbytes(8)))
        elif kind == "Apple overflow":
            company, data = encode_apple_overflow([rng.randrange(128)])
            manufacturer[company] = data
        raw = b"\x02\x01\x06"
        for company, data in manufacturer.items():
            raw += bytes([len(data) + 3, 0xFF]) + company.to_bytes(2, "little") + data
        for data in service.values():
            raw += bytes([len(data) + 3, 0x16, 0xAA, 0xFE]) + data
        ads.append((manufacturer, service, raw))
    return ads


def bench_decoders(repeats: int, count: int = 20_000) -> list[dict]:
    from bluetooth_data_tools import parse_advertisement_data_tuple

    rng = random.Random(7)
    rows = []
    kinds = [
        "iBeacon",
        "AltBeacon",
        "Eddystone-UID",
        "Eddystone-URL",
        "Eddystone-TLM",
        "Eddystone-EID",
        "Apple overflow",
    ]
    for kind in kinds:
        ads = _advertisements(kind, count, rng)
        assert all(len(decode_advertisement(m, s)) == 1 for m, s, _ in ads), kind

        def ours(ads: list = ads) -> int:
            for manufacturer, service, _ in ads:
                decode_advertisement(manufacturer, service)
            return len(ads)

        def reference(ads: list = ads) -> int:
            for *_, raw in ads:
                parse_advertisement_data_tuple((raw,))
            return len(ads)

        ref_s, n = _best_of(repeats, reference)
        ours_s, _ = _best_of(repeats, ours)
        rows.append({"name": f"{kind}: bluetooth-data-tools GAP parse (reference)", "unit": "adv/s",
                     "value": n / ref_s, "ratio": 1.0})  # fmt: skip
        rows.append({"name": f"{kind}: edge_agent.core.frames decode", "unit": "frames/s",
                     "value": n / ours_s, "ratio": ref_s / ours_s})  # fmt: skip
    return rows


def bench_identity_scale(repeats: int) -> list[dict]:
    """Each registry size in a fresh interpreter, so its RSS is the registry's own."""
    rows = []
    for customers in (100_000, 1_000_000):
        output = subprocess.run(
            [sys.executable, "-m", "benchmarks.identity_scale", "--customers", str(customers)],
            check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
        ).stdout  # fmt: skip
        figures = json.loads(output)
        label = f"{customers // 1000}k customers" if customers < 1_000_000 else "1M customers"
        rows += [
            {"name": f"decode+resolve+presence, {label}", "unit": "sightings/s",
             "value": figures["observe_per_s"], "ratio": figures["ratio_vs_decode"], **figures},
            {"name": f"window rebuild at rotation, {label}", "unit": "s",
             "value": figures["rotation_rebuild_s"], "ratio": None},
            {"name": f"tables at start (keys + 3 windows), {label}", "unit": "s",
             "value": figures["table_build_s"], "ratio": None},
            {"name": f"process RSS, {label}", "unit": "MB", "value": figures["rss_mb"], "ratio": None},
        ]  # fmt: skip
    return rows


GROUPS: dict[str, Callable[[int], list[dict]]] = {
    "decoders": bench_decoders,
    "core": bench_core,
    "replay": bench_replay,
    "outbox": lambda repeats: bench_enqueue(repeats) + bench_drain(repeats),
    "backlog": lambda repeats: bench_backlog(),
    "identity": bench_identity_scale,
    "accuracy": lambda repeats: bench_accuracy(),
    "calibration": bench_calibration,
    "fleet": lambda repeats: bench_fleet(),
    "latency": lambda repeats: bench_notification_latency(),
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    parser.add_argument("--only", nargs="+", choices=sorted(GROUPS), help="run only these groups")
    args = parser.parse_args()
    results = {name: GROUPS[name](args.repeats) for name in args.only or GROUPS}
    print(f"{'benchmark':<58} {'value':>14} {'unit':<12} {'vs baseline':>11}")
    for rows in results.values():
        for row in rows:
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            value = f"{row['value']:>14.3f}" if abs(row["value"]) < 100 else f"{row['value']:>14,.0f}"
            print(f"{row['name']:<58} {value} {row['unit']:<12} {ratio:>11}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(), "repeats": args.repeats}
    if args.only and args.output.exists():
        # A partial run refreshes its groups and keeps the others' last figures.
        results = json.loads(args.output.read_text())["results"] | results
    args.output.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

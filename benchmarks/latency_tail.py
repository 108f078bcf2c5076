"""Where the click-and-collect latency tail comes from: the ``latency`` run, timed stage by stage.

``python -m benchmarks --only tail`` (or ``python -m benchmarks.latency_tail`` for JSON). The
idle-outbox run of ``notification_latency`` (1,000 arrivals, 20 ms apart, the real daemon and a
local mosquitto) with each arrival's path cut into the stages it crosses, on one clock
(``time.time``):

- queue: the sighting handed to the main loop -> the main loop runs it through the core;
- core: decode, resolve, presence and rules for that sighting;
- commit: the group commit that holds its notification (one synchronous=FULL transaction);
- to publish: that commit -> the link thread hands the notification to paho (wake-up, the
  sender connection's query of due rows, the GIL);
- broker: paho's publish -> the HQ subscriber has it (loopback, mosquitto, paho's network
  thread of the subscriber in this process).

For the slowest 1 % of arrivals, the stage that took longest is counted, so the tail is
attributed, not guessed. Beside it, in the same run: a bare SQLite commit (WAL,
synchronous=FULL) every 20 ms in a separate process on the same disk, the box's load average,
and this process's involuntary context switches (the CPU taken away by other processes).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.notification_latency import _run
from benchmarks.week import _PROBE
from edge_agent.core.sighting import Sighting
from edge_agent.daemon.service import Service
from tests.conftest import Mosquitto

STAGES = ("queue", "core", "commit", "to_publish", "broker")


class _Stages:
    """Per-arrival stage times, keyed by the sighting's timestamp / the order id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.observed: dict[float, tuple[float, float]] = {}  # sighting ts -> (core start, end)
        self.commits: list[tuple[float, float]] = []  # (start, end) of commits that wrote
        self.published: dict[str, float] = {}  # order id -> paho publish called
        # The process's CPU time at each stage boundary, by the same keys: a stage whose wall
        # time is long while the process used almost no CPU waited for the CPU (another
        # process ran) or for the disk; one where the process kept a core busy waited for the GIL.
        self.submitted_cpu: dict[float, float] = {}
        self.observed_cpu: dict[float, tuple[float, float]] = {}
        self.published_cpu: dict[str, float] = {}

    def instrument(self, service: Service) -> None:
        pipeline = service.pipeline
        observe, commit = pipeline.observe, pipeline.commit

        def timed_observe(sighting: Sighting) -> bool:
            start, cpu = time.time(), time.process_time()
            urgent = observe(sighting)
            self.observed[sighting.ts] = (start, time.time())
            self.observed_cpu[sighting.ts] = (cpu, time.process_time())
            return urgent

        submit = service.submit

        def timed_submit(sighting: Sighting) -> None:
            self.submitted_cpu[sighting.ts] = time.process_time()
            submit(sighting)

        service.submit = timed_submit  # type: ignore[method-assign]

        def timed_commit() -> int:
            start = time.time()
            written = commit()
            if written:
                self.commits.append((start, time.time()))
            return written

        pipeline.observe = timed_observe  # type: ignore[method-assign]
        pipeline.commit = timed_commit  # type: ignore[method-assign]
        client = service.link._client
        publish = client.publish

        def timed_publish(topic: str, payload: Any = None, *args: Any, **kwargs: Any) -> Any:
            if isinstance(payload, bytes) and b"cnc.arrival.customer" in payload:
                order_id = json.loads(payload)["data"]["order_id"]
                with self.lock:
                    self.published.setdefault(order_id, time.time())
                    self.published_cpu.setdefault(order_id, time.process_time())
            return publish(topic, payload, *args, **kwargs)

        client.publish = timed_publish  # type: ignore[method-assign]


def _commit_after(commits: list[tuple[float, float]], moment: float) -> tuple[float, float] | None:
    for start, end in commits:
        if end >= moment:
            return start, end
    return None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(workdir: Path) -> dict[str, Any]:
    broker = Mosquitto(workdir).start()
    probe_log = workdir / "probe.log"
    probe = subprocess.Popen(
        [sys.executable, "-c", _PROBE, str(workdir / "probe.db"), str(probe_log), "0.02"]
    )
    stages = _Stages()
    load_before = os.getloadavg()
    switches_before = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    begun = time.time()
    try:
        figures = _run(broker, workdir, 0, stages.instrument)
    finally:
        probe.kill()
        probe.wait()
        broker.stop()
    ended = time.time()
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - switches_before
    sent: dict[str, float] = figures.pop("sent")
    received: dict[str, float] = figures.pop("received")
    per_arrival: dict[str, dict[str, float]] = {}
    for order_id, submitted in sent.items():
        core = stages.observed.get(submitted)
        published = stages.published.get(order_id)
        arrived = received.get(order_id)
        if core is None or published is None or arrived is None:
            continue
        commit = _commit_after(stages.commits, core[1])
        if commit is None:
            continue
        cpu_start = stages.submitted_cpu.get(submitted)
        cpu_end = stages.published_cpu.get(order_id)
        cpu_share = None
        if cpu_start is not None and cpu_end is not None and published > submitted:
            cpu_share = (cpu_end - cpu_start) / (published - submitted)
        core_cpu = stages.observed_cpu[submitted]
        per_arrival[order_id] = {
            # process CPU seconds per wall second, sighting -> publish (2 = both cores busy)
            "process_cpu_share": cpu_share if cpu_share is not None else float("nan"),
            "core_cpu_ms": 1000 * (core_cpu[1] - core_cpu[0]),
            "total": 1000 * (arrived - submitted),
            "queue": 1000 * (core[0] - submitted),
            "core": 1000 * (core[1] - core[0]),
            "commit": 1000 * (commit[1] - max(commit[0], core[1])),
            "to_publish": 1000 * (published - commit[1]),
            "broker": 1000 * (arrived - published),
        }
    ordered = sorted(per_arrival.values(), key=lambda a: a["total"])
    ordered = [a for a in ordered if a["process_cpu_share"] == a["process_cpu_share"]]  # timed ones
    tail = ordered[int(0.99 * (len(ordered) - 1)) :] if ordered else []
    blamed = Counter(max(STAGES, key=lambda s: a[s]) for a in tail)
    commits = sorted(
        float(ms)
        for line in probe_log.read_text().splitlines()
        if len(parts := line.split()) == 2
        for stamp, ms in [parts]
        if begun <= float(stamp) <= ended
    )

    def pct(values: list[float], share: float) -> float:
        return sorted(values)[int(share * (len(values) - 1))] if values else float("nan")

    return {
        **figures,
        "timed_arrivals": len(per_arrival),
        "p99_ms": pct([a["total"] for a in ordered], 0.99),
        **{f"{s}_p50_ms": pct([a[s] for a in ordered], 0.5) for s in STAGES},
        **{f"{s}_p99_ms": pct([a[s] for a in ordered], 0.99) for s in STAGES},
        "tail_blamed_on": dict(blamed),
        "slowest": ordered[-3:],
        # Over the slowest 1 %: how much CPU the process got while they waited, against all.
        "tail_process_cpu_share": statistics.median([a["process_cpu_share"] for a in tail]) if tail else None,
        "all_process_cpu_share": statistics.median([a["process_cpu_share"] for a in ordered])
        if ordered
        else None,
        "bare_commit_p50_ms": pct(commits, 0.5),
        "bare_commit_p99_ms": pct(commits, 0.99),
        "bare_commit_max_ms": commits[-1] if commits else float("nan"),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "involuntary_context_switches": switches,
    }


def bench_latency_tail() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="edge-agent-tail-") as workdir:
        figures = measure(Path(workdir))
    rows: list[dict[str, Any]] = [
        {"name": "C&C arrival p99, idle outbox, stage by stage", "unit": "ms", "value": figures["p99_ms"],
         "ratio": figures["p99_ms"] / figures["bare_commit_p99_ms"], **figures},
    ]  # fmt: skip
    for stage in STAGES:
        rows.append(
            {
                "name": f"  stage {stage}, p99",
                "unit": "ms",
                "value": figures[f"{stage}_p99_ms"],
                "ratio": None,
            }
        )
    rows.append(
        {"name": "  bare synchronous=FULL commit, p99, same disk", "unit": "ms",
         "value": figures["bare_commit_p99_ms"], "ratio": None}
    )  # fmt: skip
    return rows


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="edge-agent-tail-") as workdir:
        json.dump(measure(Path(workdir)), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

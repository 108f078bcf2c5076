"""``edge-agent replay``: a recorded trace through the real pipeline, messages to a file.

No broker: the outbox is drained into JSON lines ``{"topic": ..., "payload": {...}}``, each row
acknowledged as it is written, exactly where the MQTT link would have published it. Event ids
and anonymous salts come from a seeded stream, so the same inputs give byte-identical output.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from edge_agent.adapters.clock import simulated_wall
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import TraceProblem, read_trace
from edge_agent.daemon.assembly import assemble, offline_copy
from edge_agent.storage.outbox import Outbox
from edge_agent.tools.simclock import SimulatedRun, SimulatedTime

DEFAULT_SEED = "edge-agent-replay"


class FileUplink:
    """Writes outbox rows as JSON lines and acknowledges them, in the link's order."""

    def __init__(self, outbox: Outbox, out: TextIO, batch: int = 1000) -> None:
        self._outbox = outbox
        self._out = out
        self._batch = batch
        self.written = 0

    def drain(self) -> None:
        while rows := self._outbox.due(self._batch):
            for row in rows:
                record = {"topic": row.topic, "payload": json.loads(row.payload)}
                self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
            self._outbox.acknowledge([row.id for row in rows])
            self.written += len(rows)


@dataclass(slots=True)
class ReplayReport:
    sightings: int = 0
    messages: int = 0
    problems: list[TraceProblem] = field(default_factory=list)
    downlinks_applied: int = 0
    downlinks_rejected: int = 0


def replay(
    config: AgentConfig,
    trace_lines: Iterable[str],
    out: TextIO,
    *,
    downlinks: Iterable[tuple[str, bytes]] = (),
    timed_downlinks: Iterable[tuple[str, bytes, str]] = (),
    speed: float | None = None,
    seed: str = DEFAULT_SEED,
    problems: TextIO = sys.stderr,
) -> ReplayReport:
    report = ReplayReport()
    with tempfile.TemporaryDirectory(prefix="edge-agent-replay-") as workdir:
        simulated = SimulatedTime()
        agent = assemble(
            offline_copy(config, Path(workdir) / "replay.db"), simulated_wall(simulated.wall), None,
            ids=EventIdFactory.seeded(seed),
        )  # fmt: skip
        try:
            pipeline = agent.pipeline
            uplink = FileUplink(pipeline.outbox, out)
            sightings = _sightings(read_trace(trace_lines), report, problems)
            first = next(sightings, None)
            if first is not None:
                for kind, payload in downlinks:
                    pipeline.downlink(pipeline.topics.downlink(kind), payload, first.ts)
                uplink.drain()
                simulated.now = first.ts
                driver = SimulatedRun(pipeline, after_batch=uplink.drain, speed=speed, time=simulated)
                for kind, payload, when in timed_downlinks:
                    at = first.ts + float(when[1:]) if when.startswith("+") else float(when)
                    topic = pipeline.topics.downlink(kind)
                    driver.at(
                        at, lambda ts, topic=topic, payload=payload: pipeline.downlink(topic, payload, ts)
                    )
                driver.feed(itertools.chain([first], sightings))
                driver.finish()
                report.sightings = driver.report.sightings
            uplink.drain()
            report.messages = uplink.written
            report.downlinks_applied = pipeline.counters["downlinks_applied"]
            report.downlinks_rejected = pipeline.counters["downlinks_rejected"]
        finally:
            agent.close()
    return report


def _sightings(
    items: Iterable[Sighting | TraceProblem], report: ReplayReport, problems: TextIO
) -> Iterator[Sighting]:
    for item in items:
        if isinstance(item, TraceProblem):
            report.problems.append(item)
            problems.write(f"trace {item}, skipped\n")
        else:
            yield item


def read_downlink_file(path: Path) -> list[bytes]:
    """A downlink file holds one message per line, the same JSON HQ would publish."""
    return [line.encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

"""``edge-agent replay``: a recorded trace through the real pipeline, messages to a file.

No broker: the outbox is drained into JSON lines ``{"topic": ..., "payload": {...}}``, each row
acknowledged as it is written, exactly where the MQTT link would have published it. Event ids
and anonymous salts come from a seeded stream, so the same inputs give byte-identical output.
Downlinks come from files named by ``KIND=FILE[@WHEN]`` specs (``parse_downlink_spec``).
A trace recorded with another store's configuration names receivers this one does not have:
the core ignores their sightings, so replay says which, with how many sightings each had.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
import tempfile
from collections import Counter
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
SPEC_FORM = "KIND=FILE or KIND=FILE@WHEN (seconds or +seconds)"


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
    # Receivers the trace names and the configuration does not, with their sightings (ignored).
    unknown_receivers: dict[str, int] = field(default_factory=dict)
    known_receivers: tuple[str, ...] = ()


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
    report = ReplayReport(known_receivers=tuple(r.id for r in config.receivers))
    with tempfile.TemporaryDirectory(prefix="edge-agent-replay-") as workdir:
        simulated = SimulatedTime()
        agent = assemble(
            offline_copy(config, Path(workdir) / "replay.db"), simulated_wall(simulated.wall), None,
            ids=EventIdFactory.seeded(seed),
        )  # fmt: skip
        try:
            pipeline = agent.pipeline
            uplink = FileUplink(pipeline.outbox, out)
            unknown: Counter[str] = Counter()
            sightings = _sightings(read_trace(trace_lines), report, problems, unknown)
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
                    driver.at(at, functools.partial(pipeline.downlink, topic, payload))
                driver.feed(itertools.chain([first], sightings))
                driver.finish()
                report.sightings = driver.report.sightings
            uplink.drain()
            report.messages = uplink.written
            report.downlinks_applied = pipeline.counters["downlinks_applied"]
            report.downlinks_rejected = pipeline.counters["downlinks_rejected"]
        finally:
            agent.close()
    report.unknown_receivers = dict(unknown)
    _warn_unknown_receivers(report, problems)
    return report


def _warn_unknown_receivers(report: ReplayReport, problems: TextIO) -> None:
    """Once per receiver: a wrong ``--config`` otherwise replays silently into almost nothing."""
    known = ", ".join(report.known_receivers) or "none"
    for receiver, count in sorted(report.unknown_receivers.items()):
        problems.write(
            f"trace receiver {receiver!r} is not in the configuration: its {count} sightings were "
            f"ignored (the configuration knows: {known})\n"
        )


def _sightings(
    items: Iterable[Sighting | TraceProblem], report: ReplayReport, problems: TextIO, unknown: Counter[str]
) -> Iterator[Sighting]:
    """The trace's sightings; its bad lines reported and skipped, unknown receivers counted."""
    known = frozenset(report.known_receivers)
    for item in items:
        if isinstance(item, TraceProblem):
            report.problems.append(item)
            problems.write(f"trace {item}, skipped\n")
        else:
            if item.receiver not in known:
                unknown[item.receiver] += 1
            yield item


def read_downlink_file(path: Path) -> list[bytes]:
    """A downlink file holds one message per line, the same JSON HQ would publish."""
    return [line.encode() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class DownlinkSpecError(ValueError):
    """A ``--downlink`` spec that is malformed or names a file that cannot be read; the message
    says which, as the command prints it."""


@dataclass(frozen=True, slots=True)
class DownlinkSpec:
    """``KIND=FILE[@WHEN]``: apply the messages in FILE as KIND downlinks before the trace, or at
    WHEN (Unix seconds, or ``+SECONDS`` after the first sighting)."""

    kind: str
    file: str  # as typed (not a Path): an error names it the way the user wrote it
    when: str = ""  # empty: before the trace

    def __str__(self) -> str:
        return f"{self.kind}={self.file}" + (f"@{self.when}" if self.when else "")


def parse_downlink_spec(spec: str) -> DownlinkSpec:
    """The parts of ``KIND=FILE[@WHEN]``, or DownlinkSpecError. A FILE holding ``@`` needs a WHEN
    (the last ``@`` starts it); a trailing ``@`` with nothing after it means no WHEN."""
    kind, sep, target = spec.partition("=")
    file, _, when = target.rpartition("@") if "@" in target else (target, "", "")
    if not sep or not kind or not file or (when and not _is_when(when)):
        raise DownlinkSpecError(f"--downlink expects {SPEC_FORM}, got {spec!r}")
    return DownlinkSpec(kind, file, when)


def read_downlink_specs(
    specs: Iterable[str],
) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes, str]]]:
    """The ``downlinks`` and ``timed_downlinks`` of ``replay`` from ``--downlink`` specs, in
    order, each file read as it comes; DownlinkSpecError for the first spec that fails."""
    downlinks: list[tuple[str, bytes]] = []
    timed: list[tuple[str, bytes, str]] = []
    for text in specs:
        spec = parse_downlink_spec(text)
        try:
            payloads = read_downlink_file(Path(spec.file))
        except OSError as exc:
            raise DownlinkSpecError(f"cannot read downlink file {spec.file}: {exc.strerror}") from exc
        if spec.when:
            timed.extend((spec.kind, payload, spec.when) for payload in payloads)
        else:
            downlinks.extend((spec.kind, payload) for payload in payloads)
    return downlinks, timed


def _is_when(text: str) -> bool:
    try:
        float(text.removeprefix("+"))
    except ValueError:
        return False
    return True

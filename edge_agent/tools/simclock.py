"""Drive a pipeline through recorded sightings with a simulated clock.

Replay and the demo share this loop: time is the sightings' own ``ts``, the periodic tick the
daemon's scheduler would fire every ``tick_interval_s`` is fired at the same simulated moments,
and sightings are committed in the same groups, so a store day replays in seconds and the
output is what the daemon would have published.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge_agent.core.sighting import Sighting
from edge_agent.daemon.pipeline import Pipeline


class SimulatedTime:
    """The wall clock of a replayed day: what ``now`` is for the parts that read a clock (the
    link's expiry sweep, status messages), moved on by ``SimulatedRun`` as the day goes."""

    __slots__ = ("now",)

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def wall(self) -> float:
        return self.now


@dataclass(slots=True)
class DriveReport:
    sightings: int = 0
    first_ts: float | None = None
    last_ts: float | None = None


class SimulatedRun:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        after_batch: Callable[[], None] = lambda: None,
        speed: float | None = None,
        time: SimulatedTime | None = None,
    ) -> None:
        config = pipeline.config
        self._pipeline = pipeline
        self._tick_s = config.scheduler.tick_interval_s
        self._group = config.storage.group_max_events
        self._after_batch = after_batch
        self._speed = speed
        self._next_tick: float | None = None
        self._batch: list[Sighting] = []
        # (simulated time, action): downlinks that arrive in the middle of a replayed day.
        self._scheduled: list[tuple[float, Callable[[float], object]]] = []
        self.report = DriveReport()
        self.time = time or SimulatedTime()
        self._wall_start = 0.0

    def at(self, ts: float, action: Callable[[float], object]) -> None:
        """Run ``action(ts)`` once simulated time reaches ``ts``, between the sightings around it."""
        self._scheduled.append((ts, action))
        self._scheduled.sort(key=lambda item: item[0])

    def _run_due(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            ts, action = self._scheduled.pop(0)
            self._flush()
            if self._next_tick is not None:
                self._advance_to(ts)
            action(ts)
            self._after_batch()

    def feed(self, sightings: Iterable[Sighting]) -> None:
        for sighting in sightings:
            self._run_due(sighting.ts)
            self._pace(sighting.ts)
            if self._next_tick is None:
                self._next_tick = sighting.ts + self._tick_s
                self.report.first_ts = sighting.ts
            if sighting.ts >= self._next_tick:
                self._flush()
                self._advance_to(sighting.ts)
            self._batch.append(sighting)
            self.report.sightings += 1
            self.report.last_ts = (
                sighting.ts if self.report.last_ts is None else max(self.report.last_ts, sighting.ts)
            )
            self.time.now = max(self.time.now, sighting.ts)
            if len(self._batch) >= self._group:
                self._flush()

    def finish(self) -> None:
        """Let simulated time run on until every visit and footfall interval has closed."""
        self._flush()
        if self.report.last_ts is None:
            return
        config = self._pipeline.config
        interval = config.footfall.interval_s
        end = self.report.last_ts + config.presence.absence_timeout_s + self._tick_s
        end = end - end % interval + interval
        for ts, _ in list(self._scheduled):
            if ts <= end:
                self._advance_to(ts)
                self._run_due(ts)
        self._advance_to(end)

    def _advance_to(self, now: float) -> None:
        assert self._next_tick is not None
        while self._next_tick <= now:
            self.time.now = max(self.time.now, self._next_tick)
            self._pipeline.tick(self._next_tick)
            self._next_tick += self._tick_s
        self._after_batch()

    def _flush(self) -> None:
        if self._batch:
            self._pipeline.process(self._batch)
            self._batch = []
            self._after_batch()

    def _pace(self, ts: float) -> None:
        if self._speed is None:
            return
        if self.report.first_ts is None:
            self._wall_start = _time.monotonic()
            return
        delay = (ts - self.report.first_ts) / self._speed - (_time.monotonic() - self._wall_start)
        if delay > 0:
            _time.sleep(delay)  # pacing a replay to real time, not synchronisation

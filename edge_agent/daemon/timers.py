"""The daemon's periodic jobs (tick, heartbeat, watchdog, drain nudge) on the monotonic clock.

A scheduler that plans its runs on wall-clock datetimes (APScheduler's interval trigger does)
stops when the wall clock steps back: the next run is an hour away after a step back of an hour,
so no tick ends a visit, no heartbeat reaches HQ and the watchdog stops being pinged. These
timers plan on ``Clock.monotonic`` and wait on an ``Event``, which Python also times on the
monotonic clock. Each job has its own thread, so a heartbeat waiting on a busy database never
holds up the tick or the watchdog. A run that falls behind is coalesced: one run, then the next
one interval from it, never a burst.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge_agent.core.clock import Clock

_LOGGER = logging.getLogger(__name__)


class _Job:
    def __init__(self, name: str, run: Callable[[], object], interval_s: float, clock: Clock) -> None:
        self.name = name
        self.run = run
        self.interval_s = interval_s
        self.due = clock.monotonic() + interval_s
        self.wake = threading.Event()


class Timers:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._started = False

    def add(self, name: str, run: Callable[[], object], interval_s: float) -> None:
        """Run ``run`` every ``interval_s`` seconds, the first time one interval from now."""
        job = _Job(name, run, interval_s, self._clock)
        with self._lock:
            self._jobs[name] = job
            if self._started:
                self._spawn(job)

    def reschedule(self, name: str, interval_s: float) -> None:
        with self._lock:
            job = self._jobs[name]
            job.interval_s = interval_s
            job.due = self._clock.monotonic() + interval_s
        job.wake.set()

    def poke(self) -> None:
        """Look at the clock again now (tests that move a manual clock)."""
        for job in list(self._jobs.values()):
            job.wake.set()

    def start(self) -> None:
        with self._lock:
            self._started = True
            for job in self._jobs.values():
                self._spawn(job)

    def shutdown(self) -> None:
        """Stop planning runs; a run under way finishes on its own."""
        self._stopped.set()
        self.poke()

    def _spawn(self, job: _Job) -> None:
        threading.Thread(target=self._loop, args=(job,), name=f"edge-agent-{job.name}", daemon=True).start()

    def _loop(self, job: _Job) -> None:
        while not self._stopped.is_set():
            now = self._clock.monotonic()
            if now >= job.due:
                job.due = max(job.due + job.interval_s, now)  # behind: coalesce, do not burst
                try:
                    job.run()
                except Exception:  # one failing run must not stop the job
                    _LOGGER.exception("periodic job %s failed", job.name)
                continue
            job.wake.wait(job.due - now)
            job.wake.clear()

"""The daemon's periodic jobs (tick, heartbeat, watchdog, drain nudge) on the monotonic clock.

A scheduler that plans its runs on wall-clock datetimes (APScheduler's interval trigger does)
stops when the wall clock steps back: the next run is an hour away after a step back of an hour,
so no tick ends a visit, no heartbeat reaches HQ and the watchdog stops being pinged. These
timers plan on ``Clock.monotonic`` and wait on an ``Event``, which Python also times on the
monotonic clock. A run that falls behind (a slow job, a suspended box) is coalesced: one run,
then the next from now, never a burst.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.core.clock import Clock

_LOGGER = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    run: Callable[[], object]
    interval_s: float
    due: float


class Timers:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, run: Callable[[], object], interval_s: float) -> None:
        """Run ``run`` every ``interval_s`` seconds, the first time one interval from now."""
        with self._lock:
            self._jobs[name] = _Job(run, interval_s, self._clock.monotonic() + interval_s)
        self._wake.set()

    def reschedule(self, name: str, interval_s: float) -> None:
        with self._lock:
            job = self._jobs[name]
            job.interval_s = interval_s
            job.due = self._clock.monotonic() + interval_s
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edge-agent-timers", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop planning runs; a run under way finishes on its own."""
        self._stopped.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            now = self._clock.monotonic()
            with self._lock:
                due = [job for job in self._jobs.values() if job.due <= now]
                for job in due:
                    job.due = max(job.due + job.interval_s, now)  # behind: coalesce, do not burst
                wait = min((job.due for job in self._jobs.values()), default=now + 1.0) - now
            for job in due:
                try:
                    job.run()
                except Exception:  # one failing job must not stop the others
                    _LOGGER.exception("periodic job failed")
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

"""The system's clocks, for the daemon; replay and the demo build a ``Clock`` of their own."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_agent.core.clock import Clock

SYSTEM_CLOCK = Clock(wall=time.time, monotonic=time.monotonic)


def simulated_wall(now: Callable[[], float]) -> Clock:
    """A clock whose wall time is ``now()`` (a simulated store day) while durations that meet the
    real network (keepalive, backoff) still run on the real monotonic clock."""
    return Clock(wall=now, monotonic=time.monotonic)

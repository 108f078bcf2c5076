"""Clocks for the adapters: the system's, and a simulated wall clock for replay and the demo."""

from __future__ import annotations

import time
from collections.abc import Callable

from edge_agent.core.clock import Clock
from edge_agent.storage.clock import SYSTEM_CLOCK

__all__ = ["SYSTEM_CLOCK", "simulated_wall"]


def simulated_wall(now: Callable[[], float]) -> Clock:
    """A clock whose wall time is ``now()`` (a simulated store day) while durations that meet the
    real network (keepalive, backoff) still run on the real monotonic clock."""
    return Clock(wall=now, monotonic=time.monotonic)

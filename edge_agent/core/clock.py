"""The two clocks the agent reads, as one injected value. Pure: the core only names the type.

Durations (absence timeouts, TTLs, backoff, intervals, keepalive) are measured on the monotonic
clock, which never steps; what is reported to HQ carries the wall clock (DESIGN §10). Adapters
take a ``Clock`` instead of calling ``time`` themselves, so replay and the demo run them on a
simulated wall clock and tests can move either clock by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    wall: Callable[[], float]  # Unix seconds: what messages and logs report
    monotonic: Callable[[], float]  # seconds since some start: what durations are measured on

"""Which repeats of a warning to log. Pure: time is an argument.

A fault that persists (no D-Bus, a node with a wrong clock, a stranger publishing on the
store's topics) would repeat its warning at every retry or message. The first one is logged at
once, and so is a change of what it says; the same one again only every ``interval_s``, saying
how many were held back meanwhile. Keys are bounded: some come from the network.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

# "Every few minutes": often enough that a technician tailing the journal sees the fault is
# still there, rare enough that a fault lasting all day costs a few hundred lines.
REPEAT_INTERVAL_S = 300.0
# Keys remembered at most; the least recently warned are forgotten first (then warn again).
MAX_KEYS = 256


@dataclass(slots=True)
class _Warned:
    said: str
    at: float
    held: int = 0


class RepeatLimiter:
    def __init__(self, interval_s: float = REPEAT_INTERVAL_S, max_keys: int = MAX_KEYS) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._warned: OrderedDict[str, _Warned] = OrderedDict()

    def admit(self, key: str, now: float, said: str = "") -> int | None:
        """``None``: hold this one back. A number: log it now; that many like it were held back
        since the last one logged for ``key``. ``said`` is what the warning says (a reason): a
        new one is logged at once."""
        warned = self._warned.get(key)
        # abs(): after a clock step back, "now" is before the last warning; the hold then ends
        # (one warning early) instead of lasting the step's length on top of the interval.
        if warned is not None and warned.said == said and abs(now - warned.at) < self._interval:
            warned.held += 1
            return None
        held = 0 if warned is None else warned.held
        self._warned[key] = _Warned(said, now)
        self._warned.move_to_end(key)
        while len(self._warned) > self._max_keys:
            self._warned.popitem(last=False)
        return held


def held_back(count: int) -> str:
    """The tail of a repeated warning: how many like it were not logged."""
    return f" ({count} more since the last warning)" if count else ""

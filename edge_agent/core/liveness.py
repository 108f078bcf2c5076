"""Which parts of the daemon have made progress lately. Pure: times are arguments.

systemd's watchdog restarts the daemon when pings stop; a ping must therefore mean "every part
that matters is moving", not merely "the process exists". Each part beats when it does work
(or wakes to look for work); a part that has not beaten within its limit is stalled.
"""

from __future__ import annotations

from collections.abc import Mapping


class Liveness:
    def __init__(self) -> None:
        self._beats: dict[str, float] = {}

    def beat(self, part: str, now: float) -> None:
        self._beats[part] = now

    def last(self, part: str) -> float | None:
        return self._beats.get(part)

    def stalled(self, now: float, limits: Mapping[str, float]) -> list[str]:
        """Parts (of ``limits``) with no beat, or none within their limit, sorted by name."""
        return sorted(
            part
            for part, limit in limits.items()
            if (beat := self._beats.get(part)) is None or now - beat > limit
        )

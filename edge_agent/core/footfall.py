"""Footfall: everyone counted anonymously, entries, exits and occupancy per interval. Pure.

Phones rotate their random address every ~15 minutes and each new address is a new pseudonym,
so a new pseudonym counts as an entry only if, over its first ``ENTRY_SETTLE_S``, the receiver
hearing it loudest is in the entrance zone: one that appears mid-store is a phone already inside
that rotated (README, "Footfall"). Occupancy is asked of the caller at each interval's end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from edge_agent.core.events import Envelopes, FootfallMessage, utc

# A new pseudonym's strongest receiver over this long decides whether it came in by the door.
ENTRY_SETTLE_S = 5.0
# Footfall catches up at most this many empty intervals after a long pause (a day of 15 min).
MAX_CATCH_UP_INTERVALS = 96


@dataclass(slots=True)
class _Arrival:
    """A new pseudonym whose entry is being decided."""

    deadline: float
    best_rssi: int
    receiver: str


class Footfall:
    def __init__(
        self,
        interval_s: float,
        entrance_receivers: frozenset[str],
        envelope: Envelopes,
        counters: Counter[str],
    ) -> None:
        self._interval_s = interval_s
        self._entrance = entrance_receivers
        self._envelope = envelope
        self._counters = counters
        self._interval_start: float | None = None
        self._settling: dict[Hashable, _Arrival] = {}
        self._entries = self._exits = self._recognised = 0
        self._aligned = True  # False after a clock step re-dated the open interval

    def retune(self, interval_s: float, entrance_receivers: frozenset[str]) -> None:
        """The open interval ends at its start plus the new length."""
        self._interval_s = interval_s
        self._entrance = entrance_receivers

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: the open interval keeps its counts and is
        re-dated by the step, then ends at the next boundary of the corrected clock, so the
        intervals after it are aligned on the wall again (the one across the step is shorter or
        longer than ``interval_s``, never split or counted twice)."""
        for arrival in self._settling.values():
            arrival.deadline += delta_s
        if self._interval_start is not None:
            self._interval_start += delta_s
            self._aligned = False

    def start(self, now: float) -> None:
        if self._interval_start is None:
            self._interval_start = now - now % self._interval_s

    def arrived(self, subject: Hashable, rssi: int, receiver: str, now: float, recognised: bool) -> None:
        """A visit started. A recognised customer is an entry at once (their token says who,
        wherever they are heard first); a pseudonym waits to show where it is, when the store
        has an entrance zone."""
        if recognised:
            self._entries += 1
            self._recognised += 1
        elif self._entrance:
            self._settling[subject] = _Arrival(now + ENTRY_SETTLE_S, rssi, receiver)
        else:
            self._entries += 1

    def heard(self, subject: Hashable, rssi: int, receiver: str) -> None:
        """A pseudonym heard again while its entry is being decided: keep its loudest receiver."""
        arrival = self._settling.get(subject)
        if arrival is not None and rssi > arrival.best_rssi:
            arrival.best_rssi, arrival.receiver = rssi, receiver

    @property
    def settling(self) -> bool:
        return bool(self._settling)

    def left(self) -> None:
        self._exits += 1

    def settle(self, now: float) -> None:
        """Decide, a few seconds after a new pseudonym appears, whether it came in by the door.

        Every receiver in range hears a phone, so the first one to report it says little; the
        strongest over the first seconds says where it is."""
        for subject, arrival in list(self._settling.items()):
            if arrival.deadline > now:
                continue
            del self._settling[subject]
            if arrival.receiver in self._entrance:
                self._entries += 1
            else:
                self._counters["rotations_not_counted"] += 1

    def close(
        self,
        now: float,
        occupancy: Callable[[float], int],
        zones: Callable[[float], dict[str, int]] | None = None,
    ) -> list[FootfallMessage]:
        """A ``footfall.v1`` for every interval that has ended by ``now`` (with each zone's
        occupancy at its end, when ``zones`` gives it)."""
        messages: list[FootfallMessage] = []
        assert self._interval_start is not None
        while now >= self._interval_end():
            end = self._interval_end()
            if len(messages) < MAX_CATCH_UP_INTERVALS:
                messages.append(
                    FootfallMessage(
                        **self._envelope.at(end),
                        interval_start=utc(self._interval_start), interval_end=utc(end),
                        entries=self._entries, exits=self._exits, occupancy=occupancy(end),
                        customers_recognised=self._recognised, zones={} if zones is None else zones(end),
                    )
                )  # fmt: skip
            self._entries = self._exits = self._recognised = 0
            self._interval_start = end
            self._aligned = True
        return messages

    def _interval_end(self) -> float:
        """The open interval's end: its start plus the length, or, after a step re-dated it,
        the next boundary of the corrected clock."""
        assert self._interval_start is not None
        start = self._interval_start
        if self._aligned:
            return start + self._interval_s
        return start - start % self._interval_s + self._interval_s

"""Remote receivers' clocks, learned from when their messages arrive. Pure: time is an argument.

A node publishes what it hears as it hears it, so a message's newest sighting, minus the local
time it arrives at, is the node's clock offset less the delivery delay. Delay only ever makes
that smaller, so the largest of the recent samples is the offset (the minimum-delay filter NTP
uses). A node whose clock is off by more than ``remote.max_clock_skew_s`` has its messages
rejected, as before, until ``learn_messages`` of its recent samples agree on one offset within
that skew; from then on its sightings are re-dated by the offset, and checked against the skew
again, so a flush of what it buffered while the broker was away is still dropped, not misdated.
A node that is right again is forgotten at its first message within the skew.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from edge_agent.core.receiver_formats import RemoteRejected, check_clock_skew
from edge_agent.core.sighting import Sighting


class ReceiverClocks:
    def __init__(self, max_skew_s: float, learn_messages: int) -> None:
        self._max_skew = max_skew_s
        self._learn = learn_messages
        self._samples: dict[str, deque[float]] = {}  # configured receivers only (the caller's)
        self.offsets: dict[str, float] = {}  # receivers being re-dated, by how much

    def judge(self, receiver: str, sightings: list[Sighting], now: float) -> list[Sighting] | RemoteRejected:
        """The message's sightings (re-dated if the receiver's clock is known to be off), or the
        message rejected as ``clock_skew``."""
        checked = check_clock_skew(sightings, now, self._max_skew)
        if not isinstance(checked, RemoteRejected) or not sightings:
            self._samples.pop(receiver, None)
            self.offsets.pop(receiver, None)
            return checked
        if self._learn <= 0:
            return checked
        samples = self._samples.setdefault(receiver, deque(maxlen=2 * self._learn))
        samples.append(max(s.ts for s in sightings) - now)
        offset = max(samples)
        if sum(1 for s in samples if s >= offset - self._max_skew) < self._learn:
            return checked
        self.offsets[receiver] = offset
        redated = [replace(s, ts=s.ts - offset) for s in sightings]
        return check_clock_skew(redated, now, self._max_skew)

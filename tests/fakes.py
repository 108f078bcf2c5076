"""In-memory stand-ins for the MQTT link's collaborators, for fast logic tests without a broker
or a database (the integration tests keep the real mosquitto and SQLite): a clock a test moves
by hand, an outbox that keeps its rows in a dict, and a publisher that hands out message ids."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from paho.mqtt.enums import MQTTErrorCode

from edge_agent.core.clock import Clock
from edge_agent.storage.outbox import OutboxRow


class ManualClock:
    """Two times that move only when the test says so; ``clock`` is the Clock to inject."""

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1_000.0) -> None:
        self.wall = wall
        self.monotonic = monotonic
        self.clock = Clock(wall=lambda: self.wall, monotonic=lambda: self.monotonic)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.monotonic += seconds


@dataclass
class FakeOutbox:
    """``UplinkQueue`` over a dict: rows come out most urgent first, as the SQLite outbox's do."""

    rows: dict[int, OutboxRow] = field(default_factory=dict)
    expires: dict[int, float] = field(default_factory=dict)
    attempts: Counter[int] = field(default_factory=Counter)
    acknowledged: list[int] = field(default_factory=list)  # row ids, in the order deleted
    dead: dict[int, float] = field(default_factory=dict)  # row id -> when dead-lettered
    expired: dict[int, float] = field(default_factory=dict)  # row id -> when expired
    sweeps: list[float] = field(default_factory=list)  # the times expire() was called with
    _next_id: int = 1

    def add(self, topic: str = "t", priority: int = 2, expires: float | None = None) -> int:
        row_id = self._next_id
        self._next_id += 1
        self.rows[row_id] = OutboxRow(row_id, topic, f"payload {row_id}".encode(), priority, False)
        if expires is not None:
            self.expires[row_id] = expires
        return row_id

    def due(self, limit: int, skip: Iterable[int] = ()) -> list[OutboxRow]:
        skipped = set(skip)
        waiting = sorted(
            (r for r in self.rows.values() if r.id not in skipped), key=lambda r: (r.priority, r.id)
        )
        return waiting[:limit]

    def acknowledge(self, ids: Sequence[int]) -> None:
        for row_id in ids:
            if self.rows.pop(row_id, None) is not None:
                self.acknowledged.append(row_id)

    def record_failure(self, ids: Sequence[int]) -> None:
        self.attempts.update(ids)

    def dead_letter(self, after_attempts: int, now: float) -> int:
        doomed = [row_id for row_id in self.rows if self.attempts[row_id] >= after_attempts]
        for row_id in doomed:
            del self.rows[row_id]
            self.dead[row_id] = now
        return len(doomed)

    def expire(self, now: float) -> int:
        self.sweeps.append(now)
        gone = [row_id for row_id, when in self.expires.items() if when < now and row_id in self.rows]
        for row_id in gone:
            del self.rows[row_id]
            self.expired[row_id] = now
        return len(gone)


@dataclass(frozen=True, slots=True)
class FakePublishInfo:
    mid: int
    rc: int


@dataclass
class FakePublisher:
    """Records publishes and numbers them as paho does; ``rc`` is what the next publish answers."""

    published: list[tuple[int, str, bytes]] = field(default_factory=list)  # (mid, topic, payload)
    rc: int = 0
    _next_mid: int = 1

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> FakePublishInfo:
        mid = self._next_mid
        self._next_mid += 1
        if self.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):  # queued
            self.published.append((mid, topic, payload))
        return FakePublishInfo(mid, self.rc)

    def row_ids(self) -> list[int]:
        """The outbox row ids published so far, in order (the payload names its row)."""
        return [int(payload.split()[-1]) for _, _, payload in self.published]

    def mid_of(self, row_id: int) -> int:
        """The message id of the latest publish of ``row_id``."""
        return [mid for mid, _, payload in self.published if int(payload.split()[-1]) == row_id][-1]

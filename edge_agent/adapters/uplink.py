"""The uplink window: which outbox rows are in flight to the broker, and what a PUBACK does.

At most ``inflight_window`` rows are unacknowledged at once (far below paho's 65,535 message
ids, which wrap and silently overwrite). A row is deleted only after a PUBACK whose reason
code is success; a row the broker refused waits ``2**attempts`` seconds (capped) before it is
offered again and is dead-lettered after ``dead_letter_after`` refusals. Rows unacknowledged
for two keepalives on a live connection are offered again. Runs on the link thread only.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Protocol

from paho.mqtt.enums import MQTTErrorCode

from edge_agent.adapters.link_stats import LinkStats
from edge_agent.core.clock import Clock
from edge_agent.core.settings import MqttSettings
from edge_agent.storage.outbox import OutboxRow

_LOGGER = logging.getLogger(__name__)

# A refused row waits 2**attempts seconds, capped, before it is offered to the broker again.
REFUSED_BACKOFF_CAP_S = 60.0
# How often the sender drops expired rows (notifications past their TTL) before filling its window.
EXPIRY_CHECK_S = 1.0
# What paho answers a publish it queued: NO_CONN still queues a QoS 1 message in paho, which
# sends it on reconnect.
_QUEUED = (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)


class UplinkQueue(Protocol):
    """What the link needs from the outbox (``storage.outbox.Outbox``)."""

    def due(self, limit: int, skip: Iterable[int] = ()) -> Sequence[OutboxRow]: ...
    def acknowledge(self, ids: Sequence[int]) -> None: ...
    def record_failure(self, ids: Sequence[int]) -> None: ...
    def dead_letter(self, after_attempts: int, now: float) -> int: ...
    def expire(self, now: float) -> int: ...


class PublishInfo(Protocol):
    @property
    def mid(self) -> int: ...
    @property
    def rc(self) -> int: ...


class Publisher(Protocol):
    """The part of paho's client the window publishes with."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> PublishInfo: ...


# (message id, delivered, the broker's reason when not): what paho's on_publish recorded.
Ack = tuple[int, bool, str]


class UplinkWindow:
    def __init__(self, queue: UplinkQueue, settings: MqttSettings, stats: LinkStats, clock: Clock) -> None:
        self._queue = queue
        self._window = settings.inflight_window
        self._dead_letter_after = settings.dead_letter_after
        self._stuck_after_s = 2 * settings.keepalive_s
        self._stats = stats
        self._clock = clock
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (outbox row id, sent at)
        self._retry_at: dict[int, tuple[float, int]] = {}  # row id -> (monotonic time, attempts)
        self._sent: set[int] = set()  # row ids published and not yet acknowledged (to count resends)
        # Monotonic time of the last expiry sweep: how often is a duration (a wall clock stepped
        # back would stop the sweeps); what has expired is judged on the wall clock.
        self._expired_at = float("-inf")

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def reconnected(self) -> None:
        """paho resends what was in flight when the connection dropped; their ack clocks
        restart now, or ``release_stuck`` would send them a second time after an outage."""
        now = self._clock.monotonic()
        self._inflight = {mid: (row_id, now) for mid, (row_id, _) in self._inflight.items()}
        self._stats.resent += len(self._inflight)

    def settle(self, acks: deque[Ack]) -> None:
        """Apply the PUBACKs recorded so far: delete what was delivered, back off what was refused."""
        delivered: list[int] = []
        refused: list[int] = []
        now = self._clock.monotonic()
        while acks:
            mid, success, reason = acks.popleft()
            entry = self._inflight.pop(mid, None)
            if entry is None:
                continue  # status messages are not outbox rows
            row_id = entry[0]
            if success:
                delivered.append(row_id)
                self._retry_at.pop(row_id, None)
                self._sent.discard(row_id)
            else:
                refused.append(row_id)
                attempts = self._retry_at.get(row_id, (0.0, 0))[1] + 1
                self._retry_at[row_id] = (now + min(REFUSED_BACKOFF_CAP_S, 2.0**attempts), attempts)
                _LOGGER.warning("broker refused a publish reason=%s attempts=%d", reason, attempts)
        self._queue.acknowledge(delivered)
        self._queue.record_failure(refused)
        if refused:
            self._queue.dead_letter(self._dead_letter_after, self._clock.wall())
        if delivered:
            self._stats.last_sync = self._clock.wall()
        self._stats.acknowledged += len(delivered)
        self._stats.refused += len(refused)

    def release_stuck(self) -> None:
        """Rows unacknowledged for two keepalives on a live connection are offered again."""
        limit = self._clock.monotonic() - self._stuck_after_s
        for mid in [m for m, (_, sent) in self._inflight.items() if sent < limit]:
            del self._inflight[mid]

    def fill(self, publisher: Publisher) -> None:
        """Publish due rows until the window is full (expired ones are dropped first)."""
        free = self._window - len(self._inflight)
        if free <= 0:
            return
        if self._clock.monotonic() - self._expired_at >= EXPIRY_CHECK_S:
            self._expired_at = self._clock.monotonic()
            expired = self._queue.expire(self._clock.wall())
            if expired:
                self._stats.expired += expired
                _LOGGER.info("dropped %d expired messages unsent", expired)
        now = self._clock.monotonic()
        skip = {row_id for row_id, _ in self._inflight.values()}
        skip.update(row_id for row_id, (when, _) in self._retry_at.items() if when > now)
        stats = self._stats
        for row in self._queue.due(free, skip):
            info = publisher.publish(row.topic, row.payload, qos=1, retain=row.retain)
            if info.rc not in _QUEUED:
                _LOGGER.warning("publish not queued by paho rc=%s", info.rc)
                return
            self._inflight[info.mid] = (row.id, now)
            stats.published += 1
            if row.id in self._sent:
                stats.resent += 1
            self._sent.add(row.id)
        if len(self._sent) > self._window * 10:  # rows dropped while in flight
            self._sent = {row_id for row_id, _ in self._inflight.values()} | set(self._retry_at)

"""One path for production, replay and demo: the core plus the SQLite it needs, and no threads.

The pipeline turns sightings, downlinks and clock ticks into rows in the outbox. Whoever drives
it (the daemon's main loop, a replay, the demo) decides where inputs come from and what time it
is; whoever drains the outbox (the MQTT link, a file writer) decides where messages go.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.const import PRIORITY_NAMES
from edge_agent.core import StoreCore
from edge_agent.downlinks import message_id_of, parse_downlink
from edge_agent.errors import DownlinkRejected
from edge_agent.events import ErrorMessage, Message, StatusMessage, utc
from edge_agent.ids import EventIdFactory
from edge_agent.outbox import Outbox
from edge_agent.sighting import Sighting
from edge_agent.state import StateStore
from edge_agent.storage import Database
from edge_agent.topics import Topics

_LOGGER = logging.getLogger(__name__)

# How stale a kept open visit's last sighting may get.
VISIT_SNAPSHOT_S = 30.0


class Pipeline:
    def __init__(self, config: AgentConfig, database: Database, ids: EventIdFactory) -> None:
        self.config = config
        self.database = database
        self.ids = ids
        self.topics = Topics(config.mqtt.topic_prefix, config.store.id)
        self.outbox = Outbox(database, self.topics)
        self.state = StateStore(database)
        self.core = StoreCore(config, ids)
        self.core.load(self.state.customers(), self.state.orders(), self.state.registry_version())
        self.core.restore_visits(self.state.open_visits())
        self.counters: Counter[str] = Counter()
        self._visits_saved_at: float | None = None

    def process(self, sightings: Sequence[Sighting]) -> int:
        """Run a group of sightings through the core and commit what they caused at once."""
        messages: list[Message] = []
        for sighting in sightings:
            try:
                messages.extend(self.core.observe(sighting))
            except Exception:  # a bug must cost one sighting, not the daemon
                self.counters["sighting_errors"] += 1
                _LOGGER.exception("sighting from receiver=%s failed in the core", sighting.receiver)
        if sightings:
            now = sightings[-1].ts
            with self.database.transaction():
                self.outbox.add(messages, now)
                self._keep_open_visits(now)
        return len(messages)

    def tick(self, now: float) -> int:
        messages = self.core.tick(now)
        with self.database.transaction():
            self.outbox.add(messages, now)
            self._keep_open_visits(now)
        return len(messages)

    def _keep_open_visits(self, now: float) -> None:
        """Save recognised customers' open visits when they change, and their last sighting
        every ``VISIT_SNAPSHOT_S``: a restart then continues the same visit and journey (or ends
        it at its real last sighting), losing at most that much of its tail."""
        stale = self._visits_saved_at is None or now - self._visits_saved_at >= VISIT_SNAPSHOT_S
        if not self.core.visits_changed and not stale:
            return
        records = self.core.open_visit_records()
        if self.core.visits_changed or records:
            self.state.save_open_visits(records)
        self.core.visits_changed = False
        self._visits_saved_at = now

    def downlink(self, topic: str, payload: bytes, now: float) -> bool:
        """Validate and apply one downlink, or answer HQ on the errors topic. Never raises."""
        kind = self.topics.downlink_kind(topic)
        try:
            if kind is None:
                raise DownlinkRejected(f"{topic!r} is not a downlink topic of this store")
            downlink = parse_downlink(kind, payload)
        except DownlinkRejected as exc:
            self._reject(topic, kind, payload, exc.reason, now)
            return False
        with self.database.transaction():
            self.state.apply(downlink)
            self.core.apply(downlink)
            self._keep_open_visits(now)
        self.counters["downlinks_applied"] += 1
        _LOGGER.info("downlink applied kind=%s message_id=%s", kind, downlink.message_id)
        return True

    def _reject(self, topic: str, kind: str | None, payload: bytes, reason: str, now: float) -> None:
        self.counters["downlinks_rejected"] += 1
        message_id = message_id_of(payload)
        _LOGGER.warning("downlink rejected kind=%s message_id=%s reason=%s", kind, message_id, reason)
        error = ErrorMessage(
            event_id=self.ids.new(now),
            store_id=self.config.store.id,
            ts=utc(now),
            topic=topic,
            kind=kind,
            message_id=message_id,
            reason=reason,
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload_bytes=len(payload),
        )
        self.outbox.add([error], now)

    def status(self, state: str, now: float, **figures: Any) -> StatusMessage:
        """Birth, heartbeat or goodbye; an 'online' one carries the local figures."""
        if state != "online":
            return StatusMessage(
                event_id=self.ids.new(now), store_id=self.config.store.id, ts=utc(now),
                state=state, agent_version=__version__,
            )  # fmt: skip
        by_priority = self.outbox.depth_by_priority()
        oldest = self.outbox.oldest_created()
        return StatusMessage(
            event_id=self.ids.new(now),
            store_id=self.config.store.id,
            ts=utc(now),
            state=state,
            agent_version=__version__,
            queue_depth=sum(by_priority.values()),
            queue_by_priority={PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(by_priority.items())},
            oldest_queued_s=None if oldest is None else round(max(0.0, now - oldest), 3),
            open_visits=self.core.open_visits,
            registry_size=len(self.core.customers),
            registry_version=self.core.registry_version,
            missing_beacons=self.core.missing_beacons,
            **figures,
        )

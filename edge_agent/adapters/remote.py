"""Remote receivers: MQTT messages from ESP32 nodes turned into sightings for the main loop."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from edge_agent.core.receiver_formats import RemoteRejected, parse_espresense, parse_generic
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.topics import Topics

_LOGGER = logging.getLogger(__name__)


class RemoteReceivers:
    """Routes each message by topic to its parser; counts what it accepts and what it drops."""

    def __init__(
        self, config: AgentConfig, submit: Callable[[Sighting], None], clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = config.remote
        self._topics = Topics(config.mqtt.topic_prefix, config.store.id)
        self._receivers = frozenset(r.id for r in config.receivers)
        self._submit = submit
        self._clock = clock
        self._espresense_root = f"{self._settings.espresense_prefix}/devices/"
        self.counters: Counter[str] = Counter()
        filters = []
        if self._settings.generic:
            filters.append(self._topics.sightings())
        if self._settings.espresense:
            filters.append(f"{self._espresense_root}+/+")
        self.topic_filters = tuple(filters)

    def handle(self, topic: str, payload: bytes) -> None:
        """Called inside paho on the link thread: parse, hand over, never raise."""
        try:
            result = self._parse(topic, payload)
        except Exception:  # a parser bug must cost one message, not the MQTT thread
            _LOGGER.exception("remote sighting parser failed topic=%s", topic)
            result = RemoteRejected("internal parser error")
        if isinstance(result, RemoteRejected):
            self.counters["rejected"] += 1
            self.counters[f"rejected: {result.reason.split(' ', 2)[0]}"] += 1
            _LOGGER.debug("remote sighting rejected topic=%s reason=%s", topic, result.reason)
            return
        for sighting in result:
            self.counters["accepted"] += 1
            self._submit(sighting)

    def _parse(self, topic: str, payload: bytes) -> list[Sighting] | RemoteRejected:
        receiver = self._topics.sightings_receiver(topic)
        if receiver is not None:
            return parse_generic(receiver, payload, self._receivers)
        if topic.startswith(self._espresense_root):
            room = topic.rsplit("/", 1)[-1]
            parsed = parse_espresense(room, payload, self._clock(), self._receivers)
            return parsed if isinstance(parsed, RemoteRejected) else [parsed]
        return RemoteRejected(f"unexpected topic {topic!r}")

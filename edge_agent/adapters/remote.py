"""Remote receivers: MQTT messages from ESP32 nodes turned into sightings for the main loop."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable

from edge_agent.core.clock import Clock
from edge_agent.core.receiver_formats import RemoteRejected, parse_espresense, parse_generic
from edge_agent.core.settings import RemoteSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.topics import Topics

_LOGGER = logging.getLogger(__name__)


class RemoteReceivers:
    """Routes each message by topic to its parser; counts what it accepts and what it drops."""

    def __init__(
        self,
        settings: RemoteSettings,
        topics: Topics,
        receivers: Iterable[str],
        submit: Callable[[Sighting], None],
        clock: Clock,
    ) -> None:
        """``receivers``: the configured receiver ids; a sighting from any other is rejected.
        An ESPresense sighting is stamped with ``clock``'s wall time (its payload has none)."""
        self._settings = settings
        self._topics = topics
        self._receivers = frozenset(receivers)
        self._submit = submit
        self._clock = clock
        self.counters: Counter[str] = Counter()
        filters = []
        if settings.generic:
            filters.append(topics.sightings())
        if settings.espresense:
            filters.append(Topics.espresense(settings.espresense_prefix))
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
        room = Topics.espresense_room(topic, self._settings.espresense_prefix)
        if room is not None:
            parsed = parse_espresense(room, payload, self._clock.wall(), self._receivers)
            return parsed if isinstance(parsed, RemoteRejected) else [parsed]
        return RemoteRejected(f"unexpected topic {topic!r}")

"""Remote receivers: MQTT messages from ESP32 nodes turned into sightings for the main loop.

What is rejected is counted by reason (``status()``, in ``status.v1`` and ``edge-agent
status``) and warned about, rate-limited: each unknown receiver at once and then every few
minutes, and likewise a configured receiver's rejected messages, by reason, and its clock when
it is off. A warning names the receiver and the reason, never the payload nor the topic beyond
the receiver id (an ESPresense topic names the device).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable

from edge_agent.core.clock import Clock
from edge_agent.core.events import RemoteStatus
from edge_agent.core.receiver_formats import RemoteRejected, parse_espresense, parse_generic
from edge_agent.core.receiverclocks import ReceiverClocks
from edge_agent.core.repeats import RepeatLimiter, held_back
from edge_agent.core.settings import RemoteSettings
from edge_agent.core.sighting import Sighting
from edge_agent.core.topics import Topics

_LOGGER = logging.getLogger(__name__)

# Unknown receiver ids counted one by one at most (they come from the topic, so from anyone on
# the broker); further ones count under rejected["unknown_receiver"] only.
MAX_UNKNOWN_RECEIVERS = 32
# A receiver id from the network is cut to this in counters and logs (configured ids are short).
MAX_RECEIVER_ID_CHARS = 64


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
        An ESPresense sighting is stamped with ``clock``'s wall time (its payload has none); a
        generic one keeps its own ``ts`` if within ``settings.max_clock_skew_s`` of it."""
        self._settings = settings
        self._topics = topics
        self._receivers = frozenset(receivers)
        self._submit = submit
        self._clock = clock
        # handle() runs on the MQTT thread, status() on the heartbeat's.
        self._lock = threading.Lock()
        self._accepted = 0
        self._rejected: Counter[str] = Counter()
        self._unknown: Counter[str] = Counter()
        self._clocks = ReceiverClocks(settings.max_clock_skew_s, settings.correct_clock_after)
        # Room for every key _reject can make, so none is forgotten and warned about early.
        self._warnings = RepeatLimiter(max_keys=MAX_UNKNOWN_RECEIVERS + 1 + 8 * (len(self._receivers) + 1))
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
            _LOGGER.exception("remote sighting parser failed")
            result = RemoteRejected("parser_error", "internal parser error")
        if isinstance(result, RemoteRejected):
            self._reject(result)
            return
        with self._lock:
            self._accepted += len(result)
        for sighting in result:
            self._submit(sighting)

    def clock_offsets(self) -> dict[str, float]:
        """Receivers whose clocks are off, by how much (their clock minus the local one)."""
        with self._lock:
            return dict(self._clocks.offsets)

    def status(self) -> RemoteStatus:
        with self._lock:
            offsets = {r: round(o, 1) for r, o in self._clocks.offsets.items()} or None
            return RemoteStatus(
                accepted=self._accepted,
                rejected=dict(self._rejected),
                unknown_receivers=dict(self._unknown),
                clock_offsets=offsets,
            )

    def _parse(self, topic: str, payload: bytes) -> list[Sighting] | RemoteRejected:
        receiver = self._topics.sightings_receiver(topic)
        if receiver is not None:
            parsed = parse_generic(receiver, payload, self._receivers)
            if isinstance(parsed, RemoteRejected):
                return parsed
            with self._lock:
                known = self._clocks.offsets.get(receiver)
                judged = self._clocks.judge(receiver, parsed, self._clock.wall())
                offset = self._clocks.offsets.get(receiver)
            skew = self._settings.max_clock_skew_s
            if offset is not None and (known is None or abs(offset - known) > skew):
                _LOGGER.warning(
                    "remote receiver %r clock is %+.1f s off the local clock: its sightings are re-dated "
                    "by that until its clock is synced (NTP/SNTP)", receiver, offset,
                )  # fmt: skip
            return judged
        room = Topics.espresense_room(topic, self._settings.espresense_prefix)
        if room is not None:
            espresense = parse_espresense(room, payload, self._clock.wall(), self._receivers)
            return espresense if isinstance(espresense, RemoteRejected) else [espresense]
        return RemoteRejected("unexpected_topic", "a topic outside the remote receivers' filters")

    def _reject(self, rejected: RemoteRejected) -> None:
        receiver = (rejected.receiver or "")[:MAX_RECEIVER_ID_CHARS]
        listed = False
        with self._lock:
            self._rejected[rejected.code] += 1
            if rejected.code == "unknown_receiver":
                listed = receiver in self._unknown or len(self._unknown) < MAX_UNKNOWN_RECEIVERS
                if listed:
                    self._unknown[receiver] += 1
            # Keys are bounded: configured receivers x codes, the listed unknown ids, one overflow.
            key = (
                f"{rejected.code}:{receiver}" if listed or rejected.code != "unknown_receiver" else "overflow"
            )
            held = self._warnings.admit(key, self._clock.monotonic())
        if held is None:
            return
        if rejected.code == "unknown_receiver":
            if listed:
                _LOGGER.warning(
                    "remote receiver %r is not in the configuration: its sightings are dropped "
                    "(configured: %s)%s",
                    receiver, ", ".join(sorted(self._receivers)) or "none", held_back(held),
                )  # fmt: skip
            else:
                _LOGGER.warning(
                    "more than %d unknown remote receivers: the others are counted, not listed%s",
                    MAX_UNKNOWN_RECEIVERS, held_back(held),
                )  # fmt: skip
        elif rejected.code == "clock_skew":
            _LOGGER.warning(
                "remote receiver %r clock is %+.1f s off the local clock (limit remote.max_clock_skew_s "
                "= %g s): its sightings are dropped until its clock is synced (NTP/SNTP)%s",
                receiver, rejected.offset_s or 0.0, self._settings.max_clock_skew_s, held_back(held),
            )  # fmt: skip
        else:
            _LOGGER.warning(
                "remote message from receiver %r rejected (%s): %s%s",
                receiver or "?", rejected.code, rejected.reason, held_back(held),
            )  # fmt: skip

"""The MQTT link's connection attempts: when the next one is due (capped exponential backoff),
and whether the broker is refusing us in a way no retry can fix (to report, not to wait on).
Both run on the link thread and measure on the monotonic clock."""

from __future__ import annotations

import logging

from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.core.clock import Clock
from edge_agent.core.errors import BrokerRefused
from edge_agent.core.settings import MqttSettings

_LOGGER = logging.getLogger(__name__)

# Refusals that no reconnect can fix: a misconfiguration to report, not to retry forever.
_FATAL_CONNACK_WORDS = ("protocol", "not authorized", "bad user name", "banned", "client identifier")
# A broker that does not speak our protocol version may drop the connection instead of
# refusing it in a CONNACK (amqtt does for MQTT 5): this many drops in a row say so.
EARLY_CLOSES_BEFORE_REFUSAL = 3
# ... or say nothing at all (amqtt, MQTT 5 with a last will): no CONNACK this long is reported.
CONNACK_TIMEOUT_S = 10.0


class ReconnectBackoff:
    """Each attempt doubles the delay before the next, up to ``reconnect_max_s``; a connection
    the broker accepted starts again from ``reconnect_min_s``."""

    def __init__(self, settings: MqttSettings, clock: Clock) -> None:
        self._min_s = settings.reconnect_min_s
        self._max_s = settings.reconnect_max_s
        self._clock = clock
        self._delay = self._min_s
        self._next_attempt = 0.0  # monotonic time of the next connection attempt

    def wait(self) -> float:
        """Seconds until the next attempt is due (zero or less: now)."""
        return self._next_attempt - self._clock.monotonic()

    def attempting(self) -> None:
        """An attempt starts now: the next one waits the current delay, which then doubles."""
        self._next_attempt = self._clock.monotonic() + self._delay
        self._delay = min(self._max_s, 2 * self._delay)

    def connected(self) -> None:
        self._delay = self._min_s

    def lost(self) -> None:
        """The connection dropped: the next attempt waits at least the current delay."""
        self._next_attempt = max(self._next_attempt, self._clock.monotonic() + self._delay)


class RefusalWatch:
    """Tells a broker that refuses us for good (credentials, protocol version) from one that is
    down or busy: the first is ``refusal``, raised to whoever waits for the connection."""

    def __init__(self, settings: MqttSettings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self.refusal: BrokerRefused | None = None
        self._early_closes = 0
        self._attempt_started: float | None = None  # monotonic time of the CONNECT awaiting CONNACK

    def attempting(self) -> None:
        """A CONNECT is about to go out."""
        self._attempt_started = self._clock.monotonic()

    def nobody_listening(self) -> None:
        self._attempt_started = None  # the broker is down, not refusing us

    def answered(self, reason_code: ReasonCode) -> bool:
        """The CONNACK came; whether it accepted us."""
        self._attempt_started = None
        if reason_code.is_failure:
            text = str(reason_code)
            _LOGGER.error("broker refused connection: %s", text)
            if any(word in text.lower() for word in _FATAL_CONNACK_WORDS):
                self.refusal = BrokerRefused(
                    f"broker {self._settings.host}:{self._settings.port} refused the connection: {text}"
                    + (" (check mqtt.protocol)" if "protocol" in text.lower() else "")
                )
            return False
        self._early_closes = 0
        self.refusal = None
        return True

    def closed_unanswered(self) -> None:
        """The connection closed before any CONNACK (not on our own stop)."""
        if self._attempt_started is None:
            return
        self._attempt_started = None
        self._early_closes += 1
        if self._early_closes == EARLY_CLOSES_BEFORE_REFUSAL:
            self._report(f"closed the connection {self._early_closes} times before answering")

    def check_timeout(self) -> None:
        started = self._attempt_started
        if (
            started is not None
            and self.refusal is None
            and self._clock.monotonic() - started > CONNACK_TIMEOUT_S
        ):
            self._report(f"has not answered in {CONNACK_TIMEOUT_S:.0f} s to")

    def _report(self, what: str) -> None:
        self.refusal = BrokerRefused(
            f"broker {self._settings.host}:{self._settings.port} {what} CONNECT: it may not speak MQTT "
            f"{self._settings.protocol} (check mqtt.protocol) or may reject this client"
        )
        _LOGGER.error("%s", self.refusal)

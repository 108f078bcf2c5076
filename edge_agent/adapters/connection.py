"""The MQTT link's connection attempts: when the next one is due (capped exponential backoff),
and whether the broker is refusing us in a way no retry can fix (to report, not to wait on).
Both run on the link thread and measure on the monotonic clock; ``LinkHealth`` says what
happened to the connection, in the log and in the status.
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Literal

from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.adapters.link_stats import LinkStats
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


# During an outage the first failed attempt is logged at once, then one line at most this often
# (with the attempts since): a store retrying every few seconds for a night must not fill the
# journal, and a technician looking at it must still see at once why the link is down.
FAILURE_REPORT_INTERVAL_S = 60.0
LinkState = Literal["up", "down"]


def failure_reason(exc: OSError) -> str:
    """A failed connection attempt in a technician's words (the errno text is kept beside it)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (nothing listening on that port)"
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "timed out (no answer from that address)"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    return str(exc.strerror or exc)


class LinkHealth:
    """What the link tells a technician: the last connection error, and the log lines of an
    outage (rate-limited, see FAILURE_REPORT_INTERVAL_S). Runs on the link thread; other threads
    only read ``error``."""

    def __init__(self, settings: MqttSettings, stats: LinkStats, clock: Clock) -> None:
        self._where = f"{settings.host}:{settings.port}"
        self._stats = stats
        self._clock = clock
        self.error: str | None = None  # the last connection failure since start, with host:port
        self._outage_started: float | None = None  # monotonic time the link went (or started) down
        self._outage_failures = 0
        self._unreported = 0  # failures since the last line logged
        self._reported_at: float | None = None

    def failed(self, reason: str, logged: bool = False) -> bool:
        """A connection attempt failed (no TCP connection, or no usable CONNACK); ``logged``:
        already said elsewhere (a refusal is an error of its own), only counted here. Returns
        whether the error differs from the last one (worth a new status snapshot)."""
        now = self._clock.monotonic()
        error = f"{self._where}: {reason}"
        changed, self.error = error != self.error, error
        self._stats.connect_failures += 1
        self._outage_failures += 1
        if self._outage_started is None:
            self._outage_started = now
        if logged:
            return changed
        self._unreported += 1
        if self._reported_at is None:
            _LOGGER.warning(
                "cannot connect to broker %s: %s; retrying, events are kept in the outbox",
                self._where,
                reason,
            )
        elif now - self._reported_at >= FAILURE_REPORT_INTERVAL_S:
            _LOGGER.warning(
                "still cannot connect to broker %s: %s (%d attempts in the last %.0f s)",
                self._where, reason, self._unreported, now - self._reported_at,
            )  # fmt: skip
        else:
            _LOGGER.debug("connection attempt failed: %s: %s", self._where, reason)
            return changed
        self._reported_at = now
        self._unreported = 0
        return changed

    def connected(self) -> None:
        now = self._clock.monotonic()
        if self._outage_started is not None:  # after a lost connection or failed attempts
            _LOGGER.info(
                "connected to broker %s again after %.0f s down (%d failed attempts)",
                self._where, now - self._outage_started, self._outage_failures,
            )  # fmt: skip
        else:
            _LOGGER.info("connected to broker %s", self._where)
        self._outage_started = None
        self._outage_failures = self._unreported = 0
        self._reported_at = None

    def unreachable(self, exc: OSError) -> bool:
        """No TCP (or TLS) connection to the broker (see ``failed``)."""
        return self.failed(failure_reason(exc))

    def dropped(self, reason_code: ReasonCode, from_broker: bool, silent_for_s: float | None) -> None:
        self.lost(disconnect_reason(reason_code, from_broker, silent_for_s))

    def lost(self, how: str) -> None:
        """A connection the broker had accepted ended without our asking."""
        self.error = f"{self._where}: {how}"
        self._outage_started = self._clock.monotonic()
        _LOGGER.warning(
            "disconnected from broker %s: %s; events are queued in the outbox until it reconnects",
            self._where, how,
        )  # fmt: skip

    def closed(self) -> None:
        """Our own clean disconnect (stop)."""
        _LOGGER.info("disconnected from broker %s on stop", self._where)


def disconnect_reason(reason_code: ReasonCode, from_broker: bool, silent_for_s: float | None) -> str:
    """Why a live connection ended, in words (paho says "Unspecified error" for most of them)."""
    if silent_for_s is not None:
        return f"keepalive timeout (nothing from the broker for {silent_for_s:.0f} s)"
    if from_broker:
        return f"closed by the broker ({reason_code})"
    if str(reason_code) == "Keep alive timeout":
        return "keepalive timeout (the broker stopped answering pings)"
    return "connection lost (the broker stopped or the network dropped)"

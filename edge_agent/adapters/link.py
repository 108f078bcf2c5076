"""The MQTT link to HQ: uplink from the outbox, downlinks in, birth and last will.

One thread owns the client: it runs paho's network loop itself (``loop_read``/``loop_write``/
``loop_misc``, paho's external-loop API, on ``poll()``), reconnects with capped backoff, and
between network events does the sending. paho's own ``loop_start`` thread is not used: with a
network thread and a sender thread taking turns on the GIL at every SQLite call and every
PUBACK, the drain ran at half the rate paho reaches alone (benchmarks/outbox.py); in one
thread it reaches 0.75-0.84x of a bare paho loop, which has two threads and both cores.
- callbacks (run in that thread, inside paho) only record what happened (a PUBACK, a
  connection change, a downlink); they never publish or touch SQLite, which sidesteps paho's
  known callback deadlocks and its mid/PUBACK races.
- sending keeps at most ``inflight_window`` outbox rows unacknowledged (far below paho's 65,535
  message ids, which wrap and silently overwrite), deletes a row only after a PUBACK whose
  reason code is success, and backs off a row the broker refused. paho resends unacknowledged
  messages itself after a reconnect.
- other threads talk to it through ``wake``, ``publish_status`` and ``ack_downlink``, which
  queue the request and interrupt the poll.
- downlinks are handed to the owner's callback with their message id; the owner calls
  ``ack_downlink`` once the effect is committed (paho's manual_ack), so the broker redelivers
  anything a crash interrupted.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.core.errors import BrokerRefused
from edge_agent.core.settings import AgentConfig
from edge_agent.core.topics import Topics
from edge_agent.storage.outbox import Outbox

_LOGGER = logging.getLogger(__name__)

# A refused row waits 2**attempts seconds, capped, before it is offered to the broker again.
REFUSED_BACKOFF_CAP_S = 60.0
# Refusals that no reconnect can fix: a misconfiguration to report, not to retry forever.
# How often the sender drops expired rows (notifications past their TTL) before filling its window.
EXPIRY_CHECK_S = 1.0
# The link thread's longest wait: expiry, backoff and the silence check run at least this often.
LOOP_WAIT_S = 0.25
_FATAL_CONNACK_WORDS = ("protocol", "not authorized", "bad user name", "banned", "client identifier")
# A broker that does not speak our protocol version may drop the connection instead of
# refusing it in a CONNACK (amqtt does for MQTT 5): this many drops in a row say so.
EARLY_CLOSES_BEFORE_REFUSAL = 3
# ... or say nothing at all (amqtt, MQTT 5 with a last will): no CONNACK this long is reported.
CONNACK_TIMEOUT_S = 10.0
# On a live connection something arrives at least every keepalive: a PUBACK, or the PINGRESP to
# the PINGREQ paho sends after keepalive seconds of quiet (its loop checks once a second). paho
# itself gives up only a second keepalive after an unanswered PINGREQ, up to 2 x keepalive
# after the path died; a router that silently drops packets would hold the store that long.
# Silence past keepalive plus this margin closes the socket, well inside 1.5 x keepalive.
SILENCE_MARGIN_FRACTION = 0.25
SILENCE_MARGIN_MIN_S = 1.5


@dataclass(frozen=True, slots=True)
class DownlinkDelivery:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(slots=True)
class LinkStats:
    published: int = 0
    acknowledged: int = 0
    refused: int = 0
    connects: int = 0
    disconnects: int = 0
    expired: int = 0  # rows dropped unsent because they expired (late notifications)
    silent_closes: int = 0  # connections closed because the broker went quiet (a dead path)
    resent: int = 0  # outbox rows published again (after a reconnect, a refusal or a restart)
    last_sync: float | None = None  # wall-clock time of the last PUBACK that deleted a row


class MqttLink:
    def __init__(
        self,
        config: AgentConfig,
        outbox: Outbox,
        *,
        on_downlink: Callable[[DownlinkDelivery], None],
        status_payload: Callable[[str], bytes],
        sighting_filters: tuple[str, ...] = (),
        on_sighting_message: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``sighting_filters`` are subscribed at QoS 0 and go to ``on_sighting_message``:
        sightings are perishable, so they are neither acknowledged nor queued for us."""
        self._settings = config.mqtt
        self._topics = Topics(config.mqtt.topic_prefix, config.store.id)
        self._outbox = outbox
        self._on_downlink = on_downlink
        self._status_payload = status_payload
        self._sighting_filters = sighting_filters
        self._on_sighting_message = on_sighting_message
        self.stats = LinkStats()
        self.refusal: BrokerRefused | None = None
        self._early_closes = 0
        self._attempt_started: float | None = None  # monotonic time of the CONNECT awaiting CONNACK
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._subscribe_mids: set[int] = set()
        # wake() writes a byte here to interrupt the link thread's poll from any thread.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._acks: collections.deque[tuple[int, bool, str]] = collections.deque()
        self._downlink_acks: collections.deque[tuple[int, int]] = collections.deque()
        self._reconnect_delay = config.mqtt.reconnect_min_s
        self._next_attempt = 0.0  # monotonic time of the next connection attempt
        self._need_birth = False
        self._pending_status: bytes | None = None
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (outbox row id, sent at)
        self._retry_at: dict[int, tuple[float, int]] = {}  # row id -> (monotonic time, attempts)
        self._sent: set[int] = set()  # row ids published and not yet acknowledged (to count resends)
        self._clock = clock  # what "now" is for expiry: the wall clock, or a replay's simulated one
        self._expired_at = float("-inf")  # clock time of the last expiry sweep
        self.last_progress = time.monotonic()  # the link thread's last loop
        self.network_progress = time.monotonic()  # the network loop's last turn (or connection attempt)
        self._last_received = time.monotonic()  # the last packet from the broker
        self._client = self._make_client(config.client_id)
        self._thread = threading.Thread(target=self._run, name="edge-agent-link", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self, client_id: str) -> mqtt.Client:
        settings = self._settings
        v5 = settings.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else None
            client.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            client.tls_set(
                ca_certs=str(settings.tls.ca_file),
                certfile=str(settings.tls.cert_file) if settings.tls.cert_file else None,
                keyfile=str(settings.tls.key_file) if settings.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(self._topics.status, self._status_payload("offline"), qos=1, retain=True)
        # The link never has more than inflight_window rows unacknowledged, so paho's own limit
        # is off: with it on, paho scans its whole out-queue on every PUBACK (_update_inflight),
        # measured at an eighth of the link thread's time while draining.
        client.max_inflight_messages_set(0)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_pre_connect = self._handle_pre_connect
        return client

    def start(self) -> None:
        settings = self._settings
        properties = None
        if settings.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = settings.session_expiry_s
        self._client.connect_async(
            settings.host,
            settings.port,
            keepalive=settings.keepalive_s,
            clean_start=False if settings.protocol == "5" else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit outstanding PUBACKs, publish 'offline' and disconnect cleanly (no last will)."""
        self._stop_deadline = time.monotonic() + timeout
        self._stopping.set()
        self.wake()
        if self._thread.ident is not None:  # started
            self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            _LOGGER.warning("link thread still busy at stop (a connection attempt): leaving it")
        self._wake_r.close()
        self._wake_w.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed to downlinks (so nothing HQ sends next is missed).

        Raises BrokerRefused at once if the broker refused in a way retrying cannot fix.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.refusal is not None:
                raise self.refusal
            if self._connected.is_set() and self._subscribed.wait(0.05):
                return True
            self._connected.wait(0.05)
        return False

    def wake(self) -> None:
        """New rows are in the outbox (or a periodic nudge): let the link thread look."""
        with contextlib.suppress(OSError):  # full (a wake is pending anyway) or closed (stopped)
            self._wake_w.send(b"\0")

    def publish_status(self, payload: bytes | None = None) -> None:
        """Refresh the retained status (heartbeat); sent by the link thread when connected."""
        self._pending_status = payload if payload is not None else self._status_payload("online")
        self.wake()

    def ack_downlink(self, mid: int, qos: int) -> None:
        """Acknowledge a downlink whose effect is committed (sent by the link thread)."""
        if qos > 0:
            self._downlink_acks.append((mid, qos))
            self.wake()

    # ------------------------------------------------------------------ paho callbacks (on the link thread)

    def _handle_pre_connect(self, client, userdata) -> None:
        self._attempt_started = self.network_progress = time.monotonic()

    def _handle_connect_fail(self) -> None:
        self._attempt_started = None  # nobody listening: the broker is down, not refusing us
        self.network_progress = time.monotonic()

    def _handle_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        self._attempt_started = None
        if reason_code.is_failure:
            text = str(reason_code)
            _LOGGER.error("broker refused connection: %s", text)
            if any(word in text.lower() for word in _FATAL_CONNACK_WORDS):
                self.refusal = BrokerRefused(
                    f"broker {self._settings.host}:{self._settings.port} refused the connection: {text}"
                    + (" (check mqtt.protocol)" if "protocol" in text.lower() else "")
                )
            return
        self.stats.connects += 1
        self._reconnect_delay = self._settings.reconnect_min_s
        self._last_received = time.monotonic()
        self._early_closes = 0
        self.refusal = None
        _LOGGER.info("connected to broker host=%s port=%s", self._settings.host, self._settings.port)
        self._need_birth = True
        self._connected.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set():
            self.stats.disconnects += 1
            if self._stopping.is_set():
                _LOGGER.info("disconnected from broker on stop")
            else:
                _LOGGER.warning("disconnected from broker reason=%s", reason_code)
        elif self._attempt_started is not None and not self._stopping.is_set():
            self._attempt_started = None
            self._early_closes += 1
            if self._early_closes == EARLY_CLOSES_BEFORE_REFUSAL:
                self._report_silent_refusal(
                    f"closed the connection {self._early_closes} times before answering"
                )
        self._connected.clear()
        self._subscribed.clear()

    def _handle_publish(self, client, userdata, mid: int, reason_code: ReasonCode, properties) -> None:
        # MQTT v5: a PUBACK can carry a failure (not authorised, quota exceeded); paho forgets
        # the message either way, so success must be checked here, not assumed.
        failed = reason_code.is_failure
        self._acks.append((mid, not failed, str(reason_code) if failed else ""))

    def _report_silent_refusal(self, what: str) -> None:
        self.refusal = BrokerRefused(
            f"broker {self._settings.host}:{self._settings.port} {what} CONNECT: it may not speak MQTT "
            f"{self._settings.protocol} (check mqtt.protocol) or may reject this client"
        )
        _LOGGER.error("%s", self.refusal)

    def _handle_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            _LOGGER.error("broker refused a downlink subscription: %s", ", ".join(failed))
            return
        self._subscribe_mids.discard(mid)
        if not self._subscribe_mids:
            self._subscribed.set()

    def _handle_message(self, client, userdata, message: mqtt.MQTTMessage) -> None:
        if self._on_sighting_message is not None and self._topics.downlink_kind(message.topic) is None:
            self._on_sighting_message(message.topic, bytes(message.payload))
            return
        self._on_downlink(DownlinkDelivery(message.topic, bytes(message.payload), message.mid, message.qos))

    # ------------------------------------------------------------------ the link thread

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.last_progress = time.monotonic()
            try:
                if self._client.socket() is None:
                    self._connect_when_due()
                else:
                    self._network(LOOP_WAIT_S)
                self._check_connack_timeout()
                self._check_silence()
                self._process_acks()
                if self._connected.is_set():
                    self._send_downlink_acks()
                    self._send_control()
                    self._release_stuck()
                    self._fill_window()
            except Exception:  # the link must outlive any one bad row or SQLite hiccup
                _LOGGER.exception("link loop error")
                self._stopping.wait(0.5)
        self._shutdown()

    def _connect_when_due(self) -> None:
        """One connection attempt once the backoff allows, else wait for it (or a wake)."""
        wait = self._next_attempt - time.monotonic()
        if wait > 0:
            self._wait_for_wake(min(wait, LOOP_WAIT_S))
            return
        self._next_attempt = time.monotonic() + self._reconnect_delay
        self._reconnect_delay = min(self._settings.reconnect_max_s, 2 * self._reconnect_delay)
        try:
            self._client.reconnect()  # sends CONNECT; the CONNACK arrives through _network
        except OSError as exc:
            _LOGGER.debug("connection attempt failed: %s", exc)
            self._handle_connect_fail()

    def _wait_for_wake(self, timeout: float) -> None:
        # poll, as in _network: select() refuses descriptors past 1,024 (a fleet of links in one
        # process has more) with a ValueError, which would have stalled every reconnection.
        with contextlib.suppress(OSError, ValueError):  # closed by stop() while this thread lingers
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            if poller.poll(int(timeout * 1000)):
                self._drain_wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._wake_r.recv(4096):
                pass

    def _network(self, timeout: float) -> None:
        """Wait for the socket (or a wake) and let paho read, write and keep the connection alive.

        ``poll``, unlike paho's ``select``, has no limit on descriptor numbers."""
        client = self._client
        sock = client.socket()
        if sock is None:
            return
        if getattr(sock, "pending", None) and sock.pending():  # decrypted TLS bytes waiting
            timeout = 0.0
        poller = select.poll()
        poller.register(sock, select.POLLIN | (select.POLLOUT if client.want_write() else 0))
        poller.register(self._wake_r, select.POLLIN)
        ready = dict(poller.poll(int(timeout * 1000)))
        self.network_progress = now = time.monotonic()
        if ready.pop(self._wake_r.fileno(), 0):
            self._drain_wake()
        events = ready.get(sock.fileno(), 0)
        if events & (select.POLLIN | select.POLLERR | select.POLLHUP) or (
            getattr(sock, "pending", None) and sock.pending()
        ):
            self._last_received = now  # bytes from the broker (a PINGRESP included): it is alive
            client.loop_read()
        if events & select.POLLOUT and client.socket() is not None:
            client.loop_write()
        client.loop_misc()  # keepalive PINGREQ, and paho's own ping timeout
        if client.socket() is None:
            self._connected.clear()
            self._next_attempt = max(self._next_attempt, time.monotonic() + self._reconnect_delay)

    def _send_downlink_acks(self) -> None:
        while self._downlink_acks:
            mid, qos = self._downlink_acks.popleft()
            self._client.ack(mid, qos)

    def _shutdown(self) -> None:
        """On stop: wait for outstanding PUBACKs (and commit them), say 'offline', disconnect."""
        deadline = self._stop_deadline
        while self._inflight and self._connected.is_set() and time.monotonic() < deadline:
            self._network(min(0.05, max(0.0, deadline - time.monotonic())))
            self._process_acks()
        self._process_acks()
        if self._connected.is_set():
            self._send_downlink_acks()
            goodbye = self._status_payload("offline")
            info = self._client.publish(self._topics.status, goodbye, qos=1, retain=True)
            while not info.is_published() and self._connected.is_set() and time.monotonic() < deadline:
                self._network(min(0.05, max(0.0, deadline - time.monotonic())))
            if not info.is_published():
                _LOGGER.warning("offline status not confirmed before disconnect")
            self._client.disconnect()  # DISCONNECT: the broker discards the last will
            closing = min(deadline, time.monotonic() + 1.0)  # the broker closes; paho reports it
            while self._client.socket() is not None and time.monotonic() < closing:
                self._network(0.05)

    def _check_connack_timeout(self) -> None:
        started = self._attempt_started
        if started is not None and self.refusal is None and time.monotonic() - started > CONNACK_TIMEOUT_S:
            self._report_silent_refusal(f"has not answered in {CONNACK_TIMEOUT_S:.0f} s to")

    def _check_silence(self) -> None:
        """Close a connection the broker has gone quiet on, so the link reconnects (see SILENCE_*)."""
        if not self._connected.is_set():
            return
        keepalive = self._settings.keepalive_s
        limit = keepalive + max(SILENCE_MARGIN_FRACTION * keepalive, SILENCE_MARGIN_MIN_S)
        silent = time.monotonic() - self._last_received
        if silent < limit:
            return
        sock = self._client.socket()
        if sock is None:
            return
        _LOGGER.warning(
            "nothing from the broker for %.1f s (keepalive %d s): connection presumed dead, reconnecting",
            silent, keepalive,
        )  # fmt: skip
        self.stats.silent_closes += 1
        self._last_received = time.monotonic()  # once per dead connection
        # The next poll sees end-of-file, paho reports the connection lost and the link reconnects
        # with backoff. No DISCONNECT is sent, so the broker's last will for us stands.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _send_control(self) -> None:
        if self._need_birth:
            self._need_birth = False
            # paho resends what was in flight when the connection dropped; their ack clocks
            # restart now, or _release_stuck would send them a second time after an outage.
            now = time.monotonic()
            self._inflight = {mid: (row_id, now) for mid, (row_id, _) in self._inflight.items()}
            self.stats.resent += len(self._inflight)
            filters = [(topic_filter, 1) for topic_filter in self._topics.downlink_filters]
            filters += [(topic_filter, 0) for topic_filter in self._sighting_filters]
            result, mid = self._client.subscribe(filters)
            if result == mqtt.MQTT_ERR_SUCCESS:
                self._subscribe_mids.add(mid)
            self._pending_status = self._status_payload("online")
        status, self._pending_status = self._pending_status, None
        if status is not None:
            self._client.publish(self._topics.status, status, qos=1, retain=True)

    def _process_acks(self) -> None:
        delivered: list[int] = []
        refused: list[int] = []
        now = time.monotonic()
        while self._acks:
            mid, success, reason = self._acks.popleft()
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
        self._outbox.acknowledge(delivered)
        self._outbox.record_failure(refused)
        if refused:
            self._outbox.dead_letter(self._settings.dead_letter_after, self._clock())
        if delivered:
            self.stats.last_sync = time.time()
        self.stats.acknowledged += len(delivered)
        self.stats.refused += len(refused)

    def _release_stuck(self) -> None:
        """Rows unacknowledged for two keepalives on a live connection are offered again."""
        limit = time.monotonic() - 2 * self._settings.keepalive_s
        for mid in [m for m, (_, sent) in self._inflight.items() if sent < limit]:
            del self._inflight[mid]

    def _fill_window(self) -> None:
        free = self._settings.inflight_window - len(self._inflight)
        if free <= 0:
            return
        wall = self._clock()
        if wall - self._expired_at >= EXPIRY_CHECK_S:
            self._expired_at = wall
            expired = self._outbox.expire(wall)
            if expired:
                self.stats.expired += expired
                _LOGGER.info("dropped %d expired messages unsent", expired)
        now = time.monotonic()
        skip = {row_id for row_id, _ in self._inflight.values()}
        skip.update(row_id for row_id, (when, _) in self._retry_at.items() if when > now)
        for row in self._outbox.due(free, skip):
            info = self._client.publish(row.topic, row.payload, qos=1, retain=row.retain)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                _LOGGER.warning("publish not queued by paho rc=%s", info.rc)
                return
            # NO_CONN still queues a QoS 1 message in paho, which sends it on reconnect.
            self._inflight[info.mid] = (row.id, now)
            self.stats.published += 1
            if row.id in self._sent:
                self.stats.resent += 1
            self._sent.add(row.id)
        if len(self._sent) > 10 * self._settings.inflight_window:  # rows dropped while in flight
            self._sent = {row_id for row_id, _ in self._inflight.values()} | set(self._retry_at)

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
- sending keeps at most ``inflight_window`` outbox rows unacknowledged, deletes a row only after
  a PUBACK whose reason code is success, and backs off a row the broker refused (``uplink``).
  paho resends unacknowledged messages itself after a reconnect.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import ConnectFlags, DisconnectFlags
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.adapters.connection import LinkHealth, LinkState, ReconnectBackoff, RefusalWatch
from edge_agent.adapters.link_client import connect_async, make_client, set_will
from edge_agent.adapters.link_stats import LinkStats
from edge_agent.adapters.uplink import Ack, UplinkQueue, UplinkWindow
from edge_agent.core.clock import Clock
from edge_agent.core.errors import BrokerRefused
from edge_agent.core.events import StatusState, utc
from edge_agent.core.settings import MqttSettings
from edge_agent.core.topics import Topics

__all__ = ["DownlinkDelivery", "LinkStats", "MqttLink", "UplinkQueue"]

_LOGGER = logging.getLogger(__name__)

# The link thread's longest wait: expiry, backoff and the silence check run at least this often.
LOOP_WAIT_S = 0.25
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


class MqttLink:
    def __init__(
        self,
        settings: MqttSettings,
        topics: Topics,
        outbox: UplinkQueue,
        *,
        client_id: str,
        on_downlink: Callable[[DownlinkDelivery], None],
        status_payload: Callable[[StatusState], bytes],
        sighting_filters: Sequence[str] = (),
        on_sighting_message: Callable[[str, bytes], None] | None = None,
        on_link_change: Callable[[], None] | None = None,
        clock: Clock,
    ) -> None:
        """``sighting_filters`` are subscribed at QoS 0 and go to ``on_sighting_message``:
        sightings are perishable, so they are neither acknowledged nor queued for us.
        ``on_link_change`` is told (on the link thread, so it must only hand over, never do
        I/O) each time the connection comes up or goes down, or its last error changes.
        ``clock``'s wall time is what expiry and the last sync are told in (a replay's simulated
        one, or the system's); keepalive, backoff and timeouts run on its monotonic time."""
        self._settings = settings
        self._topics = topics
        self._on_downlink = on_downlink
        self._status_payload = status_payload
        self._sighting_filters = tuple(sighting_filters)
        self._on_sighting_message = on_sighting_message
        self._on_link_change = on_link_change
        self._clock = clock
        self.stats = LinkStats()
        self._health = LinkHealth(settings, self.stats, clock)
        self._silent_for: float | None = None  # set when _check_silence closes the connection
        self._attempt_since: datetime | None = None  # when the CONNECT in progress went out
        self._window = UplinkWindow(outbox, settings, self.stats, clock)
        self._backoff = ReconnectBackoff(settings, clock)
        self._refusals = RefusalWatch(settings, clock)
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._subscribe_mids: set[int] = set()
        # wake() writes a byte here to interrupt the link thread's poll from any thread.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._stop_deadline = 0.0
        self._acks: collections.deque[Ack] = collections.deque()
        self._downlink_acks: collections.deque[tuple[int, int]] = collections.deque()
        self._need_birth = False
        self._pending_status: bytes | None = None
        now = clock.monotonic()
        self.last_progress = now  # the link thread's last loop
        self.network_progress = now  # the network loop's last turn (or connection attempt)
        self._last_received = now  # the last packet from the broker
        self._client = self._make_client(client_id)
        self._thread = threading.Thread(target=self._run, name="edge-agent-link", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def _make_client(self, client_id: str) -> mqtt.Client:
        client = make_client(self._settings, client_id)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_publish = self._handle_publish
        client.on_message = self._handle_message
        client.on_subscribe = self._handle_subscribe
        client.on_pre_connect = self._handle_pre_connect
        return client

    def start(self) -> None:
        connect_async(self._client, self._settings)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Commit outstanding PUBACKs, publish 'offline' and disconnect cleanly (no last will)."""
        self._stop_deadline = self._clock.monotonic() + timeout
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
    def state(self) -> LinkState:
        return "up" if self._connected.is_set() else "down"

    @property
    def error(self) -> str | None:
        """The last connection failure since start (host:port and why), None if there was none."""
        return self._health.error

    @property
    def refusal(self) -> BrokerRefused | None:
        """Set once the broker refused us in a way retrying cannot fix."""
        return self._refusals.refusal

    @property
    def inflight(self) -> int:
        return self._window.inflight

    def wait_connected(self, timeout: float) -> bool:
        """Wait until connected and subscribed to downlinks (so nothing HQ sends next is missed).

        Raises BrokerRefused at once if the broker refused in a way retrying cannot fix.
        """
        deadline = self._clock.monotonic() + timeout
        while self._clock.monotonic() < deadline:
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

    def _handle_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        self.network_progress = self._clock.monotonic()
        self._refusals.attempting()

    def _handle_connect_fail(self) -> None:
        self._refusals.nobody_listening()
        self.network_progress = self._clock.monotonic()

    def _handle_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if not self._refusals.answered(reason_code):
            if self._health.failed(f"refused the connection ({reason_code})", logged=True):
                self._link_changed()
            return
        self.stats.connects += 1
        self.stats.connected_since = self._attempt_since
        self._backoff.connected()
        self._last_received = self._clock.monotonic()
        self._health.connected()
        self._need_birth = True
        self._connected.set()
        self._link_changed()

    def _handle_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        if was_connected:
            self.stats.disconnects += 1
            if self._stopping.is_set():
                self._health.closed()
            else:
                self._health.dropped(reason_code, flags.is_disconnect_packet_from_server, self._silent_for)
        elif not self._stopping.is_set():
            self._refusals.closed_unanswered()
            if self._health.failed("the broker closed the connection before answering CONNECT"):
                self._link_changed()
        self._silent_for = None
        self._connected.clear()
        self._subscribed.clear()
        if was_connected:
            self._link_changed()

    def _link_changed(self) -> None:
        if self._on_link_change is not None:
            self._on_link_change()  # a queue put: nothing that raises

    def _handle_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_code: ReasonCode, properties: Properties
    ) -> None:
        # MQTT v5: a PUBACK can carry a failure (not authorised, quota exceeded); paho forgets
        # the message either way, so success must be checked here, not assumed.
        failed = reason_code.is_failure
        self._acks.append((mid, not failed, str(reason_code) if failed else ""))

    def _handle_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        failed = [str(code) for code in reason_codes if code.is_failure]
        if failed:
            _LOGGER.error("broker refused a downlink subscription: %s", ", ".join(failed))
            return
        self._subscribe_mids.discard(mid)
        if not self._subscribe_mids:
            self._subscribed.set()

    def _handle_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if self._on_sighting_message is not None and self._topics.downlink_kind(message.topic) is None:
            self._on_sighting_message(message.topic, bytes(message.payload))
            return
        self._on_downlink(DownlinkDelivery(message.topic, bytes(message.payload), message.mid, message.qos))

    # ------------------------------------------------------------------ the link thread

    def _run(self) -> None:
        while not self._stopping.is_set():
            self.last_progress = self._clock.monotonic()
            try:
                if self._client.socket() is None:
                    self._connect_when_due()
                else:
                    self._network(LOOP_WAIT_S)
                self._refusals.check_timeout()
                self._check_silence()
                self._process_acks()
                if self._connected.is_set():
                    self._send_downlink_acks()
                    self._send_control()
                    self._window.release_stuck()
                    self._window.fill(self._client)
            except Exception:  # the link must outlive any one bad row or SQLite hiccup
                _LOGGER.exception("link loop error")
                self._stopping.wait(0.5)
        self._shutdown()

    def _connect_when_due(self) -> None:
        """One connection attempt once the backoff allows, else wait for it (or a wake)."""
        wait = self._backoff.wait()
        if wait > 0:
            self._wait_for_wake(min(wait, LOOP_WAIT_S))
            return
        self._backoff.attempting()
        self._attempt_since = set_will(
            self._client, self._topics.status, self._status_payload("offline"), utc(self._clock.wall())
        )
        try:
            self._client.reconnect()  # sends CONNECT; the CONNACK arrives through _network
        except OSError as exc:
            if self._health.unreachable(exc):
                self._link_changed()
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
        if isinstance(sock, ssl.SSLSocket) and sock.pending():  # decrypted TLS bytes waiting
            timeout = 0.0
        poller = select.poll()
        poller.register(sock, select.POLLIN | (select.POLLOUT if client.want_write() else 0))
        poller.register(self._wake_r, select.POLLIN)
        ready = dict(poller.poll(int(timeout * 1000)))
        self.network_progress = now = self._clock.monotonic()
        if ready.pop(self._wake_r.fileno(), 0):
            self._drain_wake()
        events = ready.get(sock.fileno(), 0)
        if events & (select.POLLIN | select.POLLERR | select.POLLHUP) or (
            isinstance(sock, ssl.SSLSocket) and sock.pending()
        ):
            self._last_received = now  # bytes from the broker (a PINGRESP included): it is alive
            client.loop_read()
        if events & select.POLLOUT and client.socket() is not None:
            client.loop_write()
        client.loop_misc()  # keepalive PINGREQ, and paho's own ping timeout
        if client.socket() is None:
            self._connected.clear()
            self._backoff.lost()

    def _send_downlink_acks(self) -> None:
        while self._downlink_acks:
            mid, qos = self._downlink_acks.popleft()
            self._client.ack(mid, qos)

    def _shutdown(self) -> None:
        """On stop: wait for outstanding PUBACKs (and commit them), say 'offline', disconnect."""
        deadline = self._stop_deadline
        monotonic = self._clock.monotonic
        while self._window.inflight and self._connected.is_set() and monotonic() < deadline:
            self._network(min(0.05, max(0.0, deadline - monotonic())))
            self._process_acks()
        self._process_acks()
        if self._connected.is_set():
            self._send_downlink_acks()
            goodbye = self._status_payload("offline")
            info = self._client.publish(self._topics.status, goodbye, qos=1, retain=True)
            while not info.is_published() and self._connected.is_set() and monotonic() < deadline:
                self._network(min(0.05, max(0.0, deadline - monotonic())))
            if not info.is_published():
                _LOGGER.warning("offline status not confirmed before disconnect")
            self._client.disconnect()  # DISCONNECT: the broker discards the last will
            closing = min(deadline, monotonic() + 1.0)  # the broker closes; paho reports it
            while self._client.socket() is not None and monotonic() < closing:
                self._network(0.05)

    def _check_silence(self) -> None:
        """Close a connection the broker has gone quiet on, so the link reconnects (see SILENCE_*)."""
        if not self._connected.is_set():
            return
        keepalive = self._settings.keepalive_s
        limit = keepalive + max(SILENCE_MARGIN_FRACTION * keepalive, SILENCE_MARGIN_MIN_S)
        silent = self._clock.monotonic() - self._last_received
        if silent < limit:
            return
        sock = self._client.socket()
        if not isinstance(sock, socket.socket):  # None: already closed (an SSLSocket is a socket)
            return
        _LOGGER.warning(
            "nothing from the broker for %.1f s (keepalive %d s): connection presumed dead, reconnecting",
            silent, keepalive,
        )  # fmt: skip
        self.stats.silent_closes += 1
        self._silent_for = silent
        self._last_received = self._clock.monotonic()  # once per dead connection
        # The next poll sees end-of-file, paho reports the connection lost and the link reconnects
        # with backoff. No DISCONNECT is sent, so the broker's last will for us stands.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def _send_control(self) -> None:
        if self._need_birth:
            self._need_birth = False
            self._window.reconnected()
            filters = [(topic_filter, 1) for topic_filter in self._topics.downlink_filters]
            filters += [(topic_filter, 0) for topic_filter in self._sighting_filters]
            result, mid = self._client.subscribe(filters)
            if result == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._subscribe_mids.add(mid)
            self._pending_status = self._status_payload("online")
        status, self._pending_status = self._pending_status, None
        if status is not None:
            self._client.publish(self._topics.status, status, qos=1, retain=True)

    def _process_acks(self) -> None:
        self._window.settle(self._acks)

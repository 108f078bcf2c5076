"""The HQ reference consumer: every store's feed into one database, exactly once.

``edge-agent hq consume --broker HOST:PORT --group NAME --db FILE|URL`` subscribes through MQTT
v5 shared subscriptions (``$share/NAME/{prefix}/stores/+/events/+`` and the notifications and
errors topics), so running more instances with the same group spreads the feed over them. Each
message is validated against the wire models, deduplicated on ``event_id`` (delivery is
at-least-once), and acknowledged to the broker only after its row is committed (paho
``manual_ack``). The database is a SQLite file or a PostgreSQL URL (``edge_agent.hq.store``).
Each instance keeps a broker session for ``SESSION_EXPIRY_S`` under a stable ``--client-id``:
an instance that dies and comes back gets what it had not acknowledged (MQTT 5 lets a broker
hand such messages to another group member only once the session ends). Retained status is not
delivered to shared subscriptions, so every instance also subscribes to
``{prefix}/stores/+/status`` directly and keeps each store's latest state.

What was stored is read back by ``report`` (``edge-agent hq report``).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from edge_agent.core.errors import key_path
from edge_agent.core.events import UPLINK_MESSAGES, Message
from edge_agent.core.repeats import RepeatLimiter, held_back
from edge_agent.core.topics import Topics
from edge_agent.hq.store import (
    Batch,
    DatabaseTarget,
    EventRow,
    HqStore,
    RejectRow,
    StatusRow,
    describe,
    open_store,
)
from edge_agent.hq.store_sqlite import open_hq_database  # noqa: F401  # its old home, still imported

_LOGGER = logging.getLogger(__name__)
MODELS: dict[str, type[Message]] = {
    str(m.model_fields["schema_name"].default): m for m in UPLINK_MESSAGES
}  # e.g. "visit.v1" -> VisitMessage
BATCH = 500
SESSION_EXPIRY_S = 3600
BATCH_DELAY_S = 0.05
# While the broker is unreachable: the first failure is logged at once, then one line at most
# this often, with the attempts since (as the agent's link does).
FAILURE_REPORT_INTERVAL_S = 60.0
# When the database is unreachable (a PostgreSQL restart or failover), the batch is written
# again after these delays, the last repeated, its messages unacknowledged meanwhile.
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 5.0)
RETRY_ATTEMPTS = 60  # about five minutes; then the batch fails as on any other error


@dataclass(slots=True)
class ConsumerStats:
    received: int = 0  # messages whose outcome below is committed
    stored: int = 0  # new rows this instance committed
    duplicates: int = 0  # already stored (redelivered, or by another instance)
    rejected: int = 0
    statuses: int = 0
    latency_s: list[float] = field(default_factory=list)  # ts of the event -> committed, sampled


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str
    payload: bytes
    mid: int
    qos: int
    arrived: float


class HqConsumer:
    def __init__(
        self,
        host: str,
        port: int,
        group: str,
        db: DatabaseTarget,
        prefix: str = "retail/v1",
        client_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = client_id or f"hq-{group}-{id(self):x}"
        self._host, self._port = host, port
        self._prefix = prefix
        self._group = group
        self._db = db
        self._clock = clock
        self.stats = ConsumerStats()
        self._incoming: queue.Queue[Incoming | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name=f"{self.name}-writer", daemon=True)
        self.subscribed = threading.Event()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.name, protocol=mqtt.MQTTv5, manual_ack=True
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self._client = client
        self._where = f"{host}:{port}"
        self._connected_before = False
        # Failed connection attempts: the first said at once, then one line a minute with a count.
        self._connect_warnings = RepeatLimiter(FAILURE_REPORT_INTERVAL_S)
        self._stopping = False
        self._stop_requested = threading.Event()  # ends a wait between database retries

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> HqConsumer:
        open_store(self._db, self.name).close()  # tables exist (migrated) before any writer needs them
        self._writer.start()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
        properties.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self._host, self._port, keepalive=30, clean_start=False, properties=properties
        )
        self._client.loop_start()
        _LOGGER.info(
            "hq consumer %s: group %s, broker %s, database %s",
            self.name,
            self._group,
            self._where,
            describe(self._db),
        )
        return self

    def stop(self, end_session: bool = False) -> None:
        """Disconnect and finish the batch in hand. ``end_session``: the broker forgets this
        instance (an instance that is not coming back, as a load test's)."""
        self._stopping = True
        self._stop_requested.set()
        properties = None
        if end_session:
            properties = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]  # paho leaves it unannotated
            properties.SessionExpiryInterval = 0
        self._client.disconnect(properties=properties)
        self._client.loop_stop()
        self._incoming.put(None)
        self._writer.join(10)

    # ------------------------------------------------------------------ paho callbacks (never raise)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            _LOGGER.warning(
                "hq consumer %s: broker %s refused the connection: %s", self.name, self._where, reason
            )
            return
        again = "reconnected" if self._connected_before else "connected"
        _LOGGER.info("hq consumer %s: %s to broker %s, subscribing", self.name, again, self._where)
        self._connected_before = True
        self._connect_warnings = RepeatLimiter(FAILURE_REPORT_INTERVAL_S)  # the next outage warns at once
        stores = f"{self._prefix}/stores/+"
        shared = [f"{stores}/events/+", f"{stores}/notifications", f"{stores}/errors"]
        options = SubscribeOptions(qos=1)
        client.subscribe(
            [(f"$share/{self._group}/{topic}", options) for topic in shared] + [(f"{stores}/status", options)]
        )

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        held = self._connect_warnings.admit("connect", time.monotonic())
        if held is not None:
            _LOGGER.warning(
                "hq consumer %s: cannot connect to broker %s; retrying%s",
                self.name,
                self._where,
                held_back(held),
            )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.subscribed.clear()
        if self._stopping:
            _LOGGER.info("hq consumer %s: disconnected from broker %s on stop", self.name, self._where)
            return
        how = (
            f"closed by the broker ({reason})"
            if flags.is_disconnect_packet_from_server
            else "connection lost"
        )
        _LOGGER.warning(
            "hq consumer %s: lost broker %s: %s; reconnecting, unacknowledged messages come again",
            self.name, self._where, how,
        )  # fmt: skip

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            _LOGGER.error("hq consumer %s: broker refused subscriptions: %s", self.name, ", ".join(failed))
            return
        _LOGGER.info("hq consumer %s: subscribed (shared group %s)", self.name, self._group)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._incoming.put(
            Incoming(message.topic, bytes(message.payload), message.mid, message.qos, self._clock())
        )

    # ------------------------------------------------------------------ the writer

    def _write_loop(self) -> None:
        store = open_store(self._db, self.name)
        try:
            while True:
                first = self._incoming.get()
                if first is None:
                    return
                batch = [first]
                deadline = time.monotonic() + BATCH_DELAY_S
                while len(batch) < BATCH:
                    try:
                        item = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is None:
                        self._incoming.put(None)
                        break
                    batch.append(item)
                if not self._store(store, batch):
                    continue
                for item in batch:
                    if item.qos > 0:
                        self._client.ack(item.mid, item.qos)
        finally:
            store.close()

    def _store(self, store: HqStore, items: list[Incoming]) -> bool:
        """Commit ``items``; whether they are, so that they may be acknowledged."""
        try:
            batch = classify(items, self.name)
        except Exception:  # a bug: the messages stay unacknowledged, the consumer keeps running
            _LOGGER.exception("hq consumer %s: reading a batch failed", self.name)
            return False
        for attempt in range(RETRY_ATTEMPTS):
            try:
                stored = store.write(batch)
                break
            except store.transient_errors as exc:
                delay = RETRY_DELAYS_S[min(attempt, len(RETRY_DELAYS_S) - 1)]
                _LOGGER.warning(
                    "hq consumer %s: database unavailable (%s); writing the batch again in %.1f s",
                    self.name, str(exc).strip() or type(exc).__name__, delay,
                )  # fmt: skip
                if self._stop_requested.wait(delay):
                    return False
            except Exception:  # a bug or a full disk: keep running, the broker redelivers unacked
                _LOGGER.exception("hq consumer %s: storing a batch failed", self.name)
                return False
        else:
            _LOGGER.error(
                "hq consumer %s: database still unavailable; the batch stays unacknowledged", self.name
            )
            return False
        committed = self._clock()
        # Counted once committed, all together: a reader never sees a half-counted batch.
        self.stats.received += len(items)
        self.stats.stored += stored
        self.stats.duplicates += len(batch.events) - stored
        self.stats.rejected += len(batch.rejects)
        self.stats.statuses += len(batch.statuses)
        self.stats.latency_s.extend(committed - row.ts.timestamp() for row in batch.events)
        return True


def classify(items: list[Incoming], consumer: str) -> Batch:
    """The rows ``items`` make: events, statuses, and rejects for what fails validation."""
    events, rejects, statuses = [], [], []
    for item in items:
        try:
            message, text = _validate(item.payload)
        except ValueError as exc:
            rejects.append(RejectRow(item.topic, str(exc)[:500], len(item.payload), item.arrived))
            continue
        if item.topic.endswith("/status"):
            statuses.append(StatusRow(message.store_id, message.ts, getattr(message, "state", ""), text))
            continue
        parsed = Topics.store_and_stream(item.topic)
        stream = parsed[1] if parsed is not None else item.topic
        events.append(
            EventRow(message.event_id, message.store_id, message.boot_id, stream, message.seq,
                     message.schema_name, message.ts, text, item.arrived, consumer)
        )  # fmt: skip
    return Batch(events, rejects, statuses)


def _validate(payload: bytes) -> tuple[Message, str]:
    """The message and its text; ValueError saying why it is refused."""
    try:
        # Decoded first: json.loads would also take UTF-16 or a BOM, which the text stored
        # (and read back by the report) could then not be.
        text = payload.decode("utf-8")
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    model = MODELS.get(str(data.get("schema")))
    if model is None:
        raise ValueError(f"unknown schema {data.get('schema')!r}")
    try:
        message = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ValueError(f"{key_path(first['loc'])}: {first['msg']}") from None
    try:  # stored in columns of their own: a lone surrogate (JSON "\\ud800") cannot be
        f"{message.event_id}{message.store_id}{message.boot_id}{getattr(message, 'state', '')}".encode()
    except UnicodeEncodeError:
        raise ValueError("event_id, store_id, boot_id or state is not valid Unicode text") from None
    return message, text

"""The durable outbox: every message is a row in SQLite before anything tries to send it.

paho's own queue is memory only, so it never becomes the buffer: the sender takes due rows by
priority then sequence, and a row is deleted only after the broker's PUBACK reported success.
A crash anywhere therefore means a resend (HQ deduplicates on ``event_id``), never a loss.

Bounded: past ``storage.outbox_max_bytes`` expired rows go first, then telemetry oldest first;
notifications and transactional events are never evicted, and at the cap new ones are refused
loudly (ERROR log, ``alarm`` in the status). Rows the broker keeps refusing move to a dead-letter
table. Every message dropped for any of these reasons is reported to HQ as a ``gap.v1`` record
naming its boot, stream and sequence numbers, so HQ can tell a known gap from a loss.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_agent.const import PRIORITY_TELEMETRY
from edge_agent.events import GapMessage, Message, utc
from edge_agent.ids import EventIdFactory
from edge_agent.storage import Database
from edge_agent.topics import Topics

_LOGGER = logging.getLogger(__name__)
# Rows read per round while choosing telemetry to evict.
EVICTION_BATCH = 2000
# What dropping a row needs to know: its id, topic, boot, sequence number and size.
_DROPPABLE = (
    "SELECT id, topic, json_extract(CAST(payload AS TEXT), '$.boot_id'), "
    "json_extract(CAST(payload AS TEXT), '$.seq'), length(payload) FROM outbox "
)
# Room kept for the gap records an eviction writes (a few hundred bytes each).
GAP_ALLOWANCE = 2048


@dataclass(frozen=True, slots=True)
class _Row:
    """A message serialised for the outbox, before it is inserted."""

    stream: str
    seq: int
    topic: str
    payload: bytes
    priority: int
    retain: int
    created: float
    expires: float | None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    priority: int
    retain: bool


class Outbox:
    def __init__(
        self,
        database: Database,
        topics: Topics,
        boot_id: str | None = None,
        max_bytes: int | None = None,
        ids: EventIdFactory | None = None,
    ) -> None:
        self._database = database
        self._topics = topics
        self.boot_id = boot_id
        self.max_bytes = max_bytes
        self._ids = ids or EventIdFactory()
        # Sequence numbers and the byte count, shared by the main loop and the sender. Always taken
        # inside Database.transaction (its lock first, then this one), never the other way round.
        self._lock = threading.RLock()
        self._seq: dict[str, int] = {}  # stream -> last sequence number of this boot
        self.enqueued = 0  # messages added since this process opened the outbox
        # What was dropped, by reason (expired, evicted, dead_letter, refused): health counters.
        self.dropped: Counter[str] = Counter()
        self.alarm: str | None = None
        database.db["outbox"].create(
            {
                "id": int, "topic": str, "payload": bytes, "priority": int, "retain": int,
                "created": float, "expires": float, "attempts": int,
            },
            pk="id", not_null={"topic", "payload", "priority", "created"}, defaults={"attempts": 0},
            if_not_exists=True,
        )  # fmt: skip
        database.db["outbox"].create_index(["priority", "id"], if_not_exists=True)
        database.db["outbox"].create_index(["expires"], if_not_exists=True)
        database.db["dead_letter"].create(
            {"id": int, "topic": str, "payload": bytes, "attempts": int, "moved": float},
            pk="id", if_not_exists=True,
        )  # fmt: skip
        with database.lock:
            self._bytes = database.db.conn.execute(
                "SELECT coalesce(sum(length(payload)), 0) FROM outbox"
            ).fetchone()[0]

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, messages: Sequence[Message], now: float) -> None:
        """Append messages; call inside ``Database.transaction`` to group them with other writes."""
        if not messages:
            return
        with self._database.transaction(), self._lock:
            rows, sequence = self._stamp(messages, now)
            if self.max_bytes is not None:
                rows = self._make_room(rows, now)
            self._insert(rows)
            # Numbers are taken only once the rows are in (or reported as refused gaps): a failed
            # insert leaves no false gap. Only these streams: gap records took their own numbers.
            self._seq.update({m.stream: sequence[m.stream] for m in messages})

    def _stamp(self, messages: Sequence[Message], now: float) -> tuple[list[_Row], dict[str, int]]:
        """Serialised rows with ``boot_id`` and the next ``seq`` of each stream stamped in."""
        sequence = dict(self._seq)
        rows = []
        for m in messages:
            number = sequence[m.stream] = sequence.get(m.stream, 0) + 1
            payload = m.model_copy(update={"boot_id": self.boot_id, "seq": number}).to_json()
            rows.append(_Row(m.stream, number, self._topics.uplink(m.stream), payload, m.priority,
                             int(m.retain), now, m.expires_at))  # fmt: skip
        return rows, sequence

    def _insert(self, rows: Sequence[_Row]) -> None:
        self._database.db.conn.executemany(
            "INSERT INTO outbox (topic, payload, priority, retain, created, expires) VALUES (?,?,?,?,?,?)",
            [(r.topic, r.payload, r.priority, r.retain, r.created, r.expires) for r in rows],
        )
        self._bytes += sum(len(r.payload) for r in rows)
        self.enqueued += len(rows)

    # ------------------------------------------------------------------ the cap

    def _make_room(self, rows: list[_Row], now: float) -> list[_Row]:
        """Free space for ``rows`` by policy; return those that may be stored."""
        assert self.max_bytes is not None
        need = sum(len(r.payload) for r in rows)
        if self._bytes + need <= self.max_bytes:
            self.alarm = None  # room again: the alarm ends when new messages fit
            return rows
        self._drop_expired(now)
        # The gap records an eviction writes take room too: free a little more than needed.
        self._evict_telemetry(self._bytes + need - self.max_bytes + GAP_ALLOWANCE, now)
        if self._bytes + need <= self.max_bytes:
            self.alarm = None
            return rows
        kept: list[_Row] = []
        refused: list[_Row] = []
        room = self.max_bytes - self._bytes
        for row in rows:
            if len(row.payload) <= room:
                kept.append(row)
                room -= len(row.payload)
            else:
                refused.append(row)
        if refused:
            self.dropped["refused"] += len(refused)
            self.alarm = f"outbox full ({self._bytes} of {self.max_bytes} bytes): refusing new messages"
            streams = dict(Counter(r.stream for r in refused))
            _LOGGER.error("%s; refused %d: %s", self.alarm, len(refused), streams)
            self._record_dropped("refused", [(0, r.topic, self.boot_id, r.seq) for r in refused], now)
        return kept

    def _evict_telemetry(self, to_free: int, now: float) -> None:
        """Delete telemetry rows, oldest first, until ``to_free`` bytes are free (or none is left)."""
        conn = self._database.db.conn
        freed = 0
        victims: list[tuple[int, str, str | None, int | None, int]] = []
        last_id = 0
        while freed < to_free:
            rows = conn.execute(
                _DROPPABLE + "WHERE priority = ? AND id > ? ORDER BY id LIMIT ?",
                (PRIORITY_TELEMETRY, last_id, EVICTION_BATCH),
            ).fetchall()
            if not rows:
                break
            for row in rows:
                victims.append(row)
                freed += row[4]
                last_id = row[0]
                if freed >= to_free:
                    break
        if victims:
            _LOGGER.warning(
                "outbox at its cap: evicted %d telemetry messages (%d bytes)", len(victims), freed
            )
            self._drop("evicted", victims, now)

    def _drop_expired(self, now: float) -> int:
        rows = self._database.db.conn.execute(
            _DROPPABLE + "WHERE expires IS NOT NULL AND expires < ?", (now,)
        ).fetchall()
        self._drop("expired", rows, now)
        return len(rows)

    def _drop(
        self, reason: str, rows: Sequence[tuple[int, str, str | None, int | None, int]], now: float
    ) -> None:
        """Delete rows (inside the caller's transaction), count them and report them as gaps."""
        if not rows:
            return
        self._database.db.conn.executemany("DELETE FROM outbox WHERE id = ?", [(r[0],) for r in rows])
        self._bytes -= sum(r[4] for r in rows)
        self.dropped[reason] += len(rows)
        self._record_dropped(reason, [r[:4] for r in rows], now)

    def _record_dropped(
        self, reason: str, rows: Sequence[tuple[int, str, str | None, int | None]], now: float
    ) -> None:
        """One gap record per (boot, stream) and contiguous run of sequence numbers."""
        runs: dict[tuple[str | None, str], list[int | None]] = {}
        for _, topic, boot, seq in rows:
            runs.setdefault((boot, topic.split(f"/stores/{self._topics.store_id}/", 1)[-1]), []).append(seq)
        gaps = []
        for (boot, stream), numbers in runs.items():
            known = sorted(n for n in numbers if n is not None)
            if not known:
                gaps.append((reason, boot, stream, None, None, len(numbers)))
                continue
            start = previous = known[0]
            for number in [*known[1:], None]:
                if number is not None and number == previous + 1:
                    previous = number
                    continue
                gaps.append((reason, boot, stream, start, previous, previous - start + 1))
                if number is not None:
                    start = previous = number
        self._insert_gaps(gaps, now)

    def _insert_gaps(
        self, gaps: Sequence[tuple[str, str | None, str, int | None, int | None, int]], now: float
    ) -> None:
        """Gap records are small and always stored, even past the cap: HQ must learn of every drop."""
        messages = [
            GapMessage(
                event_id=self._ids.new(now), store_id=self._topics.store_id, ts=utc(now), reason=reason,
                dropped_boot_id=boot, dropped_stream=stream, first_seq=first, last_seq=last, count=count,
            )  # type: ignore[arg-type]
            for reason, boot, stream, first, last, count in gaps
        ]  # fmt: skip
        if messages:
            rows, sequence = self._stamp(messages, now)
            self._insert(rows)
            self._seq = sequence

    def due(self, limit: int, skip: Iterable[int] = ()) -> list[OutboxRow]:
        """The next ``limit`` rows to send, most urgent first, ignoring those already in flight."""
        skip_ids = set(skip)
        with self._database.sender_lock:
            cursor = self._database.sender.execute(
                "SELECT id, topic, payload, priority, retain FROM outbox ORDER BY priority, id LIMIT ?",
                (limit + len(skip_ids),),
            )
            rows = cursor.fetchall()
        return [OutboxRow(r[0], r[1], bytes(r[2]), r[3], bool(r[4])) for r in rows if r[0] not in skip_ids][
            :limit
        ]

    def expire(self, now: float) -> int:
        """Delete rows past their expiry (notifications that can no longer help), each reported
        as a gap; return how many. Run by the sender before it fills its window, so an expired
        notification is dropped, not sent late."""
        with self._database.sender_lock:  # a cheap test first: most sweeps find nothing
            found = self._database.sender.execute(
                "SELECT 1 FROM outbox WHERE expires IS NOT NULL AND expires < ? LIMIT 1", (now,)
            ).fetchone()
        if found is None:
            return 0
        with self._database.transaction(), self._lock:
            return self._drop_expired(now)

    def dead_letter(self, after_attempts: int, now: float) -> int:
        """Move rows the broker refused ``after_attempts`` times to the dead-letter table, each
        reported as a gap, so one poisoned message cannot hold up the rest; return how many."""
        with self._database.transaction() as conn, self._lock:
            rows = conn.execute(_DROPPABLE + "WHERE attempts >= ?", (after_attempts,)).fetchall()
            if not rows:
                return 0
            conn.executemany(
                "INSERT OR REPLACE INTO dead_letter SELECT id, topic, payload, attempts, ? FROM outbox "
                "WHERE id = ?",
                [(now, r[0]) for r in rows],
            )
            _LOGGER.error("moved %d messages the broker keeps refusing to the dead-letter table", len(rows))
            self._drop("dead_letter", rows, now)
            return len(rows)

    def acknowledge(self, ids: Sequence[int]) -> None:
        """Delete rows the broker confirmed; one transaction for a whole batch of PUBACKs."""
        if not ids:
            return
        with self._database.sender_transaction() as conn:  # the sender's connection: see storage
            freed = 0
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                freed += conn.execute(
                    f"SELECT coalesce(sum(length(payload)), 0) FROM outbox WHERE id IN ({marks})", chunk
                ).fetchone()[0]
                conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
        with self._lock:
            self._bytes -= freed

    def record_failure(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._database.transaction() as conn:
            conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])

    def depth(self) -> int:
        with self._database.lock:
            return self._database.db.conn.execute("SELECT count(*) FROM outbox").fetchone()[0]

    def depth_by_priority(self) -> dict[int, int]:
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT priority, count(*) FROM outbox GROUP BY priority"
            ).fetchall()
        return dict(rows)

    def oldest_created(self) -> float | None:
        """When the oldest queued message was enqueued (its age says how far behind HQ is)."""
        with self._database.lock:
            return self._database.db.conn.execute("SELECT min(created) FROM outbox").fetchone()[0]

    def peek_payloads(self) -> list[dict]:
        """Every queued payload, decoded (status view and tests)."""
        with self._database.lock:
            rows = self._database.db.conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        return [json.loads(r[0]) for r in rows]

"""The durable outbox: every message is a row in SQLite before anything tries to send it.

paho's own queue is memory only, so it never becomes the buffer: the sender takes due rows by
priority then sequence, and a row is deleted only after the broker's PUBACK reported success.
A crash anywhere therefore means a resend (HQ deduplicates on ``event_id``), never a loss.

Bounded: past ``storage.outbox_max_bytes`` expired rows go first, then telemetry oldest first;
notifications and transactional events are never evicted, and at the cap new ones are refused
loudly (ERROR log, ``alarm`` in the status). Rows the broker keeps refusing move to a dead-letter
table. Every message dropped for any of these reasons is reported to HQ as a ``gap.v1`` record
naming its boot, stream and sequence numbers, so HQ can tell a known gap from a loss.

On a full filesystem (storage's full-disk routine) the outbox is the space maker: it drops
expired rows and evicts telemetry by the same policy. If a write still finds no room, the
caller refuses the messages (``refuse``) and their gap records wait in memory for room.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic_core import SchemaSerializer

from edge_agent.core.const import PRIORITY_TELEMETRY
from edge_agent.core.errors import DiskFull
from edge_agent.core.events import GapMessage, Message, utc
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.topics import Topics
from edge_agent.storage.database import Database, is_disk_full

_LOGGER = logging.getLogger(__name__)
# How a message not yet stored serialises its boot_id and seq (fields of Message, in this order).
_UNSTAMPED = b'"boot_id":null,"seq":null'
# Rows read per round while choosing telemetry to evict.
EVICTION_BATCH = 2000
# What dropping a row needs to know: its id, topic, boot, sequence number and size.
_DROPPABLE = (
    "SELECT id, topic, json_extract(CAST(payload AS TEXT), '$.boot_id'), "
    "json_extract(CAST(payload AS TEXT), '$.seq'), length(payload) FROM outbox "
)
# The next rows to send as one JSON array: a single SQLite step. Fetching rows one by one lets
# another busy thread (the main loop in a busy store) take the GIL at every row, and each
# hand-back can wait up to a switch interval (measured: 100 rows took 79 ms beside a busy
# thread, 11 ms this way; alone, 0.1 against 0.7 ms).
_DUE_ROWS = (
    "SELECT id, topic, payload, priority, retain FROM outbox WHERE id NOT IN ({marks}) "
    "ORDER BY priority, id LIMIT ?"
)
_DUE = (
    "SELECT json_group_array(json_array(id, topic, CAST(payload AS TEXT), priority, retain)) "
    f"FROM ({_DUE_ROWS})"
)
# Sizes of rows handed out and never acknowledged are forgotten past this many.
SIZES_KEPT = 100_000
_INSERT = "INSERT INTO outbox (topic, payload, priority, retain, created, expires) VALUES "
# A run of at least this many rows of one class gets its own statement, which binds the columns
# they share once: a statement costs ~20 us to execute, and binding four values fewer saves ~1.1 us
# a row (measured inserting groups of 500 visits both ways, interleaved).
MIN_RUN = 32
# Rows per statement at most: 3,000 parameters, well inside SQLite's 32,766.
INSERT_CHUNK = 500


def _chunks(rows: Sequence[_Row]) -> Iterator[Sequence[_Row]]:
    for start in range(0, len(rows), INSERT_CHUNK):
        yield rows[start : start + INSERT_CHUNK]


# One row with every column bound (salvage).
_INSERT_ROW = _INSERT + "(?,?,?,?,?,?)"
# What a row that never expires binds for its expiry in a mixed statement (SQL turns it into NULL):
# binding None goes through sqlite3's adapter lookup (see _Row).
_NO_EXPIRY = float("-inf")


@functools.lru_cache(maxsize=64)
def _mixed_statement(rows: int) -> str:
    """Rows of different classes in turn: created (?1) bound once, the rest per row."""
    values = (f"(?{k},?{k + 1},?{k + 2},?{k + 3},?1,NULLIF(?{k + 4},?2))" for k in range(3, 3 + 5 * rows, 5))
    return _INSERT + ",".join(values)


@functools.lru_cache(maxsize=64)
def _run_statement(rows: int, expiring: bool) -> str:
    """Rows of one class: topic, priority, retain and created bound once (?1-?4), then each
    row's payload (and expiry, for classes that expire)."""
    if expiring:
        values = (f"(?1,?{5 + 2 * i},?2,?3,?4,?{6 + 2 * i})" for i in range(rows))
    else:
        values = (f"(?1,?{5 + i},?2,?3,?4,NULL)" for i in range(rows))
    return _INSERT + ",".join(values)


# Room kept for the gap records an eviction writes (a few hundred bytes each).
GAP_ALLOWANCE = 2048
# On a full disk, at least this much telemetry is evicted (more if the reserve is larger), in
# rounds of this many bytes, each its own transaction.
DISK_FULL_EVICTION_BYTES = 1 << 20
DISK_FULL_ROUND_BYTES = 64 << 10
REFUSAL_LOG_INTERVAL_S = 60.0
# Unsent rows salvaged from a quarantined database are read in chunks: a bad page costs one chunk.
SALVAGE_CHUNK = 200
_SALVAGE = "SELECT topic, payload, priority, retain, created, expires FROM outbox "


class _Kind(NamedTuple):
    """What every message of a class shares, looked up once per class instead of per message."""

    stream: str
    topic: str
    priority: int
    retain: int
    serializer: SchemaSerializer
    expiring: bool  # the class overrides expires_at


# A message serialised for the outbox, before it is inserted: (payload, expires, seq, kind).
# What its class shares is in ``kind``, not copied into every row. A plain tuple: a NamedTuple
# built with tuple.__new__ cost 0.4 us more a row (two allocations, not one, and a copy), a frozen
# dataclass 4 us, more than the SQLite insert of the row.
# The payload is a bytearray, not bytes: sqlite3 binds it without looking for an adapter first,
# as it does for bytes and None. Measured binding 500 values: bytes 0.56 us each, a bytearray
# 0.12 (plus 0.14 to copy the bytes into it), None 0.43, a float 0.03.
_Row = tuple[bytearray, float | None, int, _Kind]
PAYLOAD, EXPIRES, SEQ, KIND = range(4)


class OutboxRow(NamedTuple):
    """A queued message as the sender publishes it."""

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
        self._kinds: dict[type[Message], _Kind] = {}
        self._sizes: dict[int, int] = {}  # row id -> payload bytes, for rows handed out by due()
        self.enqueued = 0  # messages added since this process opened the outbox
        # What was dropped, by reason (expired, evicted, dead_letter, refused): health counters.
        self.dropped: Counter[str] = Counter()
        self.alarm: str | None = None
        # Gap records that found no room on a full disk; written with the next rows that fit.
        self._unwritten_gaps: list[tuple[str, str | None, str, int | None, int | None, int]] = []
        self._refusal_logged_at = float("-inf")  # monotonic time of the last ERROR about refusals
        database.db["outbox"].create(
            {
                "id": int, "topic": str, "payload": bytes, "priority": int, "retain": int,
                "created": float, "expires": float, "attempts": int,
            },
            pk="id", not_null={"topic", "payload", "priority", "created"}, defaults={"attempts": 0},
            if_not_exists=True,
        )  # fmt: skip
        database.db["outbox"].create_index(["priority", "id"], if_not_exists=True)
        # Only rows that expire (notifications) are indexed by expiry. Indexing every row's NULL
        # put each insert in the middle of the index, behind the NULLs, instead of at its end:
        # measured 1.7 us of 7.2 a row for a mix of visits and notifications (files made
        # before this change swap their index for this one at start).
        database.db.conn.execute("DROP INDEX IF EXISTS idx_outbox_expires")
        database.db.conn.execute(
            "CREATE INDEX IF NOT EXISTS idx_outbox_expiring ON outbox (expires) WHERE expires IS NOT NULL"
        )
        database.db["dead_letter"].create(
            {"id": int, "topic": str, "payload": bytes, "attempts": int, "moved": float},
            pk="id", if_not_exists=True,
        )  # fmt: skip
        self.salvaged = 0  # unsent messages recovered from a quarantined database at start
        if database.quarantined is not None:
            self.salvage(database.quarantined)
        self._bytes = 0
        self.recount()
        database.space_makers.append(self.make_space)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, messages: Sequence[Message], now: float) -> None:
        """Append messages; call inside ``Database.transaction`` to group them with other writes."""
        if not messages:
            return
        with self._database.transaction(), self._lock:
            self._undo_on_rollback()
            rows, numbered = self._stamp(messages, now)
            if self.max_bytes is not None:
                rows = self._make_room(rows, now)
            self._insert(rows, now)
            # Numbers are taken only once the rows are in (or reported as refused gaps): a failed
            # insert leaves no false gap. Only these streams: gap records took their own numbers.
            self._seq.update(numbered)
            if self._unwritten_gaps:
                gaps, self._unwritten_gaps = self._unwritten_gaps, []
                self._insert_gaps(gaps, now)

    def _undo_on_rollback(self) -> None:
        """If the caller's transaction does not commit (a full disk, a crash in its other writes),
        the numbers and byte count go back to what the file says."""
        saved = (dict(self._seq), self._bytes, self.enqueued, Counter(self.dropped), self.alarm,
                 list(self._unwritten_gaps))  # fmt: skip

        def restore() -> None:
            self._seq, self._bytes, self.enqueued, self.dropped, self.alarm, self._unwritten_gaps = saved

        self._database.on_rollback(restore)

    def refuse(self, messages: Sequence[Message], now: float) -> None:
        """Report messages that found no room even after the full-disk routine: numbered, logged at
        ERROR (the storage's disk alarm is up) and recorded as gaps, written as soon as anything
        fits."""
        if not messages:
            return
        with self._lock:
            rows, numbered = self._stamp(messages, now)
            self._seq.update(numbered)
            self.dropped["refused"] += len(rows)
            streams = dict(Counter(r[KIND].stream for r in rows))
            # At ERROR once a minute: a store refusing every event must not flood its own log.
            clock = time.monotonic()
            loud = clock - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL_S
            if loud:
                self._refusal_logged_at = clock
            level = logging.ERROR if loud else logging.DEBUG
            _LOGGER.log(level, "disk full: refusing new messages; refused %d: %s", len(rows), streams)
            dropped = [(0, r[KIND].topic, self.boot_id, r[SEQ]) for r in rows]
            for gap in self._gap_runs("refused", dropped):
                self._hold_gap(gap)
        self.flush_gaps(now)

    def _hold_gap(self, gap: tuple[str, str | None, str, int | None, int | None, int]) -> None:
        """Keep a gap record for later, merged with the previous one when it continues its run
        (a disk full for an hour refuses thousands of events: a handful of records, not thousands)."""
        held = self._unwritten_gaps
        reason, boot, stream, first, last, count = gap
        for index in range(len(held) - 1, -1, -1):
            h_reason, h_boot, h_stream, h_first, h_last, h_count = held[index]
            if (h_reason, h_boot, h_stream) != (reason, boot, stream):
                continue
            if first is not None and h_last is not None and h_last + 1 == first:
                held[index] = (reason, boot, stream, h_first, last, h_count + count)
                return
            break  # the latest run of this stream does not continue: a new record
        held.append(gap)

    @property
    def held_gaps(self) -> int:
        """Gap records waiting in memory for room on a full disk."""
        return len(self._unwritten_gaps)

    def flush_gaps(self, now: float) -> None:
        """Write gap records that found no room earlier (the pipeline's tick retries them)."""
        if not self._unwritten_gaps:
            return
        try:
            self._database.write(lambda conn: self._flush_unwritten_gaps(now))
        except (DiskFull, sqlite3.OperationalError) as exc:
            _LOGGER.debug("%d gap records wait in memory for room: %s", len(self._unwritten_gaps), exc)

    def _flush_unwritten_gaps(self, now: float) -> None:
        with self._lock:
            self._undo_on_rollback()
            gaps, self._unwritten_gaps = self._unwritten_gaps, []
            self._insert_gaps(gaps, now)

    def make_space(self) -> int:
        """The full-disk space maker: drop expired rows, then evict telemetry oldest first (at
        least the disk reserve's worth, so it can be rebuilt); return the bytes freed. Wall-clock
        time: only the daemon's writes meet a full disk."""
        now = time.time()
        before = self._bytes
        with self._database.transaction(), self._lock:
            self._undo_on_rollback()
            self._drop_expired(now)
        target = max(DISK_FULL_EVICTION_BYTES, self._database.reserve_bytes)
        # In small rounds, each checkpointed: a delete writes every page it touches to the WAL
        # (zeroed, with secure_delete), and a full disk has room for a small WAL only.
        while before - self._bytes < target:
            with self._database.transaction(), self._lock:
                self._undo_on_rollback()
                round_bytes = min(DISK_FULL_ROUND_BYTES, target - (before - self._bytes))
                freed = self._evict_telemetry(round_bytes, now, "disk full")
            if not freed:
                break
            self._database.try_checkpoint()
        return before - self._bytes

    def salvage(self, quarantined: Path) -> int:
        """Copy the unsent messages still readable in a quarantined database into this outbox
        (HQ deduplicates any that were sent already); return how many."""
        try:
            source = sqlite3.connect(f"file:{quarantined}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            _LOGGER.error("no unsent messages salvaged from %s: %s", quarantined.name, exc)
            return 0
        rows: list[tuple] = []
        try:
            try:
                last = source.execute("SELECT max(id) FROM outbox").fetchone()[0] or 0
            except sqlite3.DatabaseError:
                last = None  # the table's end is unreadable: one pass, whatever it yields
            if last is None:
                with contextlib.suppress(sqlite3.DatabaseError):
                    rows = source.execute(_SALVAGE + "ORDER BY id").fetchall()
            else:
                for start in range(0, last + 1, SALVAGE_CHUNK):
                    with contextlib.suppress(sqlite3.DatabaseError):  # one unreadable stretch, not all
                        rows += source.execute(
                            _SALVAGE + "WHERE id >= ? AND id < ? ORDER BY id", (start, start + SALVAGE_CHUNK)
                        ).fetchall()
        finally:
            source.close()
        if rows:
            with self._database.transaction() as conn:
                conn.executemany(_INSERT_ROW, rows)
        _LOGGER.error("salvaged %d unsent messages from the quarantined %s", len(rows), quarantined.name)
        self.salvaged = len(rows)
        return len(rows)

    def _stamp(self, messages: Sequence[Message], now: float) -> tuple[list[_Row], dict[str, int]]:
        """Serialised rows with ``boot_id`` and the next ``seq`` of each stream stamped in, and
        the last number each stream took (for ``_seq`` once the rows are in).

        The message is serialised once and the two placeholders it carries (``null``, as every
        message the core makes does) are replaced in the text: copying a frozen pydantic model to
        set them cost more than the SQLite insert itself (benchmarks/outbox.py).
        """
        sequence = dict(self._seq)
        stamp = b'"boot_id":' + json.dumps(self.boot_id).encode().replace(b"%", b"%%") + b',"seq":%d'
        kinds = self._kinds
        rows: list[_Row] = []
        append = rows.append
        for m in messages:
            kind = kinds.get(m.__class__) or self._kind(m.__class__)
            stream, _, _, _, serializer, expiring = kind
            number = sequence[stream] = sequence.get(stream, 0) + 1
            fields = m.__dict__
            if fields["boot_id"] is None and fields["seq"] is None:
                # The model's serializer straight to bytes (what to_json() does, less two copies),
                # the placeholders replaced in place.
                data = serializer.to_json(m, by_alias=True)
                payload = bytearray(data.replace(_UNSTAMPED, stamp % number, 1))
            else:  # stamped before (a resend of a stored message): replace properly
                payload = bytearray(m.model_copy(update={"boot_id": self.boot_id, "seq": number}).to_json())
            append((payload, m.expires_at if expiring else None, number, kind))
        numbered = {stream: n for stream, n in sequence.items() if self._seq.get(stream) != n}
        return rows, numbered

    def _kind(self, cls: type[Message]) -> _Kind:
        kind = _Kind(cls.stream, self._topics.uplink(cls.stream), cls.priority, int(cls.retain),
                     cls.__pydantic_serializer__, cls.expires_at is not Message.expires_at)  # fmt: skip
        self._kinds[cls] = kind
        return kind

    def _insert(self, rows: Sequence[_Row], now: float) -> None:
        """Insert rows in order: a long run of one class with a statement that binds what the
        class shares once, the rest with every column bound per row. Binding is much of what a
        multi-row INSERT spends its time on: with every column bound per row it was 35-55 %
        faster than executemany, and binding only the payload per row took a further 1.1 us off
        each row of 6.6 (benchmarks/outbox.py has the enqueue figures)."""
        conn = self._database.db.conn
        kinds = [row[KIND] for row in rows]
        # Where each run of rows of one class begins, and the end.
        bounds = [0, *(i for i in range(1, len(rows)) if kinds[i] is not kinds[i - 1]), len(rows)]
        done = 0  # rows before this one are inserted
        for begin, end in itertools.pairwise(bounds):
            if end - begin >= MIN_RUN:  # the rows before it (in shorter runs) first, in order
                self._insert_mixed(conn, rows[done:begin], now)
                self._insert_run(conn, rows[begin:end], now)
                done = end
        self._insert_mixed(conn, rows[done:], now)
        self._bytes += sum(len(r[PAYLOAD]) for r in rows)
        self.enqueued += len(rows)

    @staticmethod
    def _insert_mixed(conn: sqlite3.Connection, rows: Sequence[_Row], now: float) -> None:
        for piece in _chunks(rows):
            values = [now, _NO_EXPIRY]
            for payload, expires, _, kind in piece:
                expiry = _NO_EXPIRY if expires is None else expires
                values += (kind.topic, payload, kind.priority, kind.retain, expiry)
            conn.execute(_mixed_statement(len(piece)), values)

    @staticmethod
    def _insert_run(conn: sqlite3.Connection, rows: Sequence[_Row], now: float) -> None:
        kind = rows[0][KIND]
        shared = [kind.topic, kind.priority, kind.retain, now]
        for piece in _chunks(rows):
            if kind.expiring:
                values = shared + [value for payload, expires, _, _ in piece for value in (payload, expires)]
            else:
                values = shared + [row[PAYLOAD] for row in piece]
            conn.execute(_run_statement(len(piece), kind.expiring), values)

    # ------------------------------------------------------------------ the cap

    def _make_room(self, rows: list[_Row], now: float) -> list[_Row]:
        """Free space for ``rows`` by policy; return those that may be stored."""
        assert self.max_bytes is not None
        need = sum(len(r[PAYLOAD]) for r in rows)
        if self._bytes + need <= self.max_bytes:
            self.alarm = None  # room again: the alarm ends when new messages fit
            return rows
        self._drop_expired(now)
        # The gap records an eviction writes take room too: free a little more than needed.
        self._evict_telemetry(self._bytes + need - self.max_bytes + GAP_ALLOWANCE, now, "outbox at its cap")
        if self._bytes + need <= self.max_bytes:
            self.alarm = None
            return rows
        kept: list[_Row] = []
        refused: list[_Row] = []
        room = self.max_bytes - self._bytes
        for row in rows:
            if len(row[PAYLOAD]) <= room:
                kept.append(row)
                room -= len(row[PAYLOAD])
            else:
                refused.append(row)
        if refused:
            self.dropped["refused"] += len(refused)
            self.alarm = f"outbox full ({self._bytes} of {self.max_bytes} bytes): refusing new messages"
            streams = dict(Counter(r[KIND].stream for r in refused))
            _LOGGER.error("%s; refused %d: %s", self.alarm, len(refused), streams)
            self._record_dropped("refused", [(0, r[KIND].topic, self.boot_id, r[SEQ]) for r in refused], now)
        return kept

    def _evict_telemetry(self, to_free: int, now: float, why: str) -> int:
        """Delete telemetry rows, oldest first, until ``to_free`` bytes are free (or none is left);
        return the bytes freed."""
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
            _LOGGER.warning("%s: evicted %d telemetry messages (%d bytes)", why, len(victims), freed)
            self._drop("evicted", victims, now)
        return freed

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
        for row in rows:  # if one was in flight, its acknowledgement must not count it again
            self._sizes.pop(row[0], None)
        self.dropped[reason] += len(rows)
        self._record_dropped(reason, [r[:4] for r in rows], now)

    def _record_dropped(
        self, reason: str, rows: Sequence[tuple[int, str, str | None, int | None]], now: float
    ) -> None:
        self._insert_gaps(self._gap_runs(reason, rows), now)

    def _gap_runs(
        self, reason: str, rows: Sequence[tuple[int, str, str | None, int | None]]
    ) -> list[tuple[str, str | None, str, int | None, int | None, int]]:
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
        return gaps

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
            rows, numbered = self._stamp(messages, now)
            self._insert(rows, now)
            self._seq.update(numbered)

    def due(self, limit: int, skip: Iterable[int] = ()) -> list[OutboxRow]:
        """The next ``limit`` rows to send, most urgent first, ignoring those already in flight."""
        skip_ids = list(set(skip))
        marks = ",".join("?" * len(skip_ids))
        with self._database.sender_lock:
            try:
                query = _DUE.format(marks=marks)
                (text,) = self._database.sender.execute(query, (*skip_ids, limit)).fetchone()
                found = [(i, topic, data.encode(), p, r) for i, topic, data, p, r in json.loads(text)]
            except (sqlite3.OperationalError, ValueError):  # a payload that is not UTF-8: row by row
                found = self._database.sender.execute(
                    _DUE_ROWS.format(marks=marks), (*skip_ids, limit)
                ).fetchall()
        rows = [OutboxRow(i, topic, bytes(data), p, bool(r)) for i, topic, data, p, r in found]
        rows.sort(key=lambda row: (row.priority, row.id))  # the subquery's order, made explicit
        with self._lock:
            self._sizes.update((row.id, len(row.payload)) for row in rows)
        return rows

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
        try:
            freed = self._delete_acknowledged(ids)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            # Even a delete needs WAL room; the full-disk routine makes it, then this one fits.
            self._database.make_space()
            freed = self._delete_acknowledged(ids)
        with self._lock:
            self._bytes -= freed
            if len(self._sizes) > SIZES_KEPT:  # rows sent and never acknowledged (dropped meanwhile)
                self._sizes.clear()
            if self.alarm is not None and self.max_bytes is not None and self._bytes < self.max_bytes:
                self.alarm = None  # HQ took enough: new messages fit again

    def _delete_acknowledged(self, ids: Sequence[int]) -> int:
        """Delete acknowledged rows and return the bytes freed.

        Rows handed out by ``due`` have their sizes in memory, so this is one DELETE per 500
        ids. Each SQLite call lets another busy thread take the GIL, and getting it back can take
        up to a switch interval: measured while draining to mosquitto with paho's loop in its own
        thread, a SELECT of sizes plus a DELETE in a transaction cost 3 ms per batch of PUBACKs.
        """
        with self._lock:
            sizes = [self._sizes.pop(i, None) for i in ids]
        if None in sizes:  # not from due() (or forgotten): count from the file
            return self._delete_counting(ids)
        with self._database.sender_lock, self._database.write_lock:  # the sender's connection: see storage
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                self._database.sender.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
        return sum(sizes)  # type: ignore[arg-type]

    def _delete_counting(self, ids: Sequence[int]) -> int:
        with self._database.sender_transaction() as conn:
            freed = 0
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                freed += conn.execute(
                    f"SELECT coalesce(sum(length(payload)), 0) FROM outbox WHERE id IN ({marks})", chunk
                ).fetchone()[0]
                conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk)
        return freed

    def recount(self) -> None:
        """Take the byte count from the file: at start, and after rows went by another path
        (erasure)."""
        with self._database.lock, self._lock:
            self._sizes.clear()
            self._bytes = self._database.db.conn.execute(
                "SELECT coalesce(sum(length(payload)), 0) FROM outbox"
            ).fetchone()[0]

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

"""The Outbox itself: adding messages, the cap, the full-disk space maker, sending and acking.

It keeps what must agree with the file in memory (sequence numbers, the byte count, sizes of
rows in flight) and puts it back when the caller's transaction does not commit. Serialising
rows (``rows``), choosing what to drop (``policy``), gap records (``gaps``), the sender's
queries (``sending``) and the tables (``tables``) live in their own modules.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, cast

from edge_agent.core.clock import Clock
from edge_agent.core.errors import DiskFull
from edge_agent.core.events import Envelopes, Message
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.topics import Topics
from edge_agent.storage.clock import SYSTEM_CLOCK
from edge_agent.storage.database import Database, is_disk_full
from edge_agent.storage.outbox import dropping, policy, sending, tables
from edge_agent.storage.outbox.dropping import Queued
from edge_agent.storage.outbox.gaps import GapReason, GapRun
from edge_agent.storage.outbox.rows import KIND, PAYLOAD, SEQ, Row, Stamper, insert
from edge_agent.storage.outbox.salvage import salvage
from edge_agent.storage.outbox.sending import OutboxRow

_LOGGER = logging.getLogger(__name__)
# Sizes of rows handed out and never acknowledged are forgotten past this many.
SIZES_KEPT = 100_000
# Room kept for the gap records an eviction writes (a few hundred bytes each).
GAP_ALLOWANCE = 2048
# On a full disk, at least this much telemetry is evicted (more if the reserve is larger), in
# rounds of this many bytes, each its own transaction.
DISK_FULL_EVICTION_BYTES = 1 << 20
DISK_FULL_ROUND_BYTES = 64 << 10
REFUSAL_LOG_INTERVAL_S = 60.0


class Outbox:
    def __init__(
        self,
        database: Database,
        topics: Topics,
        boot_id: str | None = None,
        max_bytes: int | None = None,
        ids: EventIdFactory | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._database = database
        self._topics = topics
        self.boot_id = boot_id
        self.max_bytes = max_bytes
        self._envelope = Envelopes(topics.store_id, ids or EventIdFactory())
        self._clock = clock
        # Sequence numbers and the byte count, shared by the main loop and the sender. Always taken
        # inside Database.transaction (its lock first, then this one), never the other way round.
        self._lock = threading.RLock()
        self._seq: dict[str, int] = {}  # stream -> last sequence number of this boot
        self._stamper = Stamper(topics)
        self._sizes: dict[int, int] = {}  # row id -> payload bytes, for rows handed out by due()
        self.enqueued = 0  # messages added since this process opened the outbox
        # What was dropped, by reason (expired, evicted, dead_letter, refused): health counters.
        self.dropped: Counter[str] = Counter()
        self.alarm: str | None = None
        # Gap records that found no room on a full disk; written with the next rows that fit.
        self._unwritten_gaps: list[GapRun] = []
        self._refusal_logged_at = float("-inf")  # monotonic time of the last ERROR about refusals
        tables.create(database)
        # Unsent messages recovered from a quarantined database at start.
        self.salvaged = 0 if database.quarantined is None else salvage(database, database.quarantined)
        self._bytes = 0
        self._count_bytes()
        database.space_makers.append(self.make_space)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _count_bytes(self) -> None:
        """Take the byte count from the file, at start; from then on every path that adds or
        deletes rows keeps it."""
        with self._database.lock, self._lock:
            self._sizes.clear()
            self._bytes = tables.queued_bytes(self._database.db.conn)

    def add(self, messages: Sequence[Message], now: float) -> None:
        """Append messages; call inside ``Database.transaction`` to group them with other writes."""
        if not messages:
            return
        with self._database.transaction(), self._lock:
            self._undo_on_rollback()
            rows, numbered = self._stamper.stamp(messages, self.boot_id, self._seq)
            if self.max_bytes is not None:
                rows = self._make_room(rows, self.max_bytes, now)
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

    def _insert(self, rows: Sequence[Row], now: float) -> None:
        insert(self._database.db.conn, rows, now)
        self._bytes += sum(len(r[PAYLOAD]) for r in rows)
        self.enqueued += len(rows)

    # ------------------------------------------------------------------ refusals and gap records

    def refuse(self, messages: Sequence[Message], now: float) -> None:
        """Report messages that found no room even after the full-disk routine: numbered, logged at
        ERROR (the storage's disk alarm is up) and recorded as gaps, written as soon as anything
        fits."""
        if not messages:
            return
        with self._lock:
            rows, numbered = self._stamper.stamp(messages, self.boot_id, self._seq)
            self._seq.update(numbered)
            self.dropped["refused"] += len(rows)
            streams = dict(Counter(r[KIND].stream for r in rows))
            # At ERROR once a minute: a store refusing every event must not flood its own log.
            clock = self._clock.monotonic()
            loud = clock - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL_S
            if loud:
                self._refusal_logged_at = clock
            level = logging.ERROR if loud else logging.DEBUG
            _LOGGER.log(level, "disk full: refusing new messages; refused %d: %s", len(rows), streams)
            for gap in GapRun.runs("refused", self._unnumbered(rows)):
                gap.hold(self._unwritten_gaps)
        self.flush_gaps(now)

    def _unnumbered(self, rows: Iterable[Row]) -> list[tuple[str | None, str, int | None]]:
        """What a gap record names of rows that were never stored: this boot, their stream, seq."""
        return [(self.boot_id, r[KIND].stream, r[SEQ]) for r in rows]

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

    def _insert_gaps(self, gaps: Sequence[GapRun], now: float) -> None:
        """Gap records are small and always stored, even past the cap: HQ must learn of every drop."""
        messages = [gap.message(self._envelope.at(now)) for gap in gaps]
        if messages:
            rows, numbered = self._stamper.stamp(messages, self.boot_id, self._seq)
            self._insert(rows, now)
            self._seq.update(numbered)

    # ------------------------------------------------------------------ the cap and a full disk

    def _make_room(self, rows: list[Row], max_bytes: int, now: float) -> list[Row]:
        """Free space for ``rows`` by policy; return those that may be stored."""
        need = sum(len(r[PAYLOAD]) for r in rows)
        if policy.shortfall(self._bytes, need, max_bytes) <= 0:
            self.alarm = None  # room again: the alarm ends when new messages fit
            return rows
        self._drop_expired(now)
        # Measured after the expired rows' gap records are in. Those of the eviction take room
        # too: free a little more than needed.
        to_free = policy.shortfall(self._bytes, need, max_bytes) + GAP_ALLOWANCE
        self._evict_telemetry(to_free, now, "outbox at its cap")
        if policy.shortfall(self._bytes, need, max_bytes) <= 0:
            self.alarm = None
            return rows
        kept = policy.fit([len(r[PAYLOAD]) for r in rows], max_bytes - self._bytes)
        refused = [row for row, keep in zip(rows, kept, strict=True) if not keep]
        if refused:
            self.dropped["refused"] += len(refused)
            self.alarm = f"outbox full ({self._bytes} of {max_bytes} bytes): refusing new messages"
            streams = dict(Counter(r[KIND].stream for r in refused))
            _LOGGER.error("%s; refused %d: %s", self.alarm, len(refused), streams)
            self._insert_gaps(GapRun.runs("refused", self._unnumbered(refused)), now)
        return [row for row, keep in zip(rows, kept, strict=True) if keep]

    def make_space(self) -> int:
        """The full-disk space maker: drop expired rows, then evict telemetry oldest first (at
        least the disk reserve's worth, so it can be rebuilt); return the bytes freed. Wall-clock
        time: only the daemon's writes meet a full disk."""
        now = self._clock.wall()
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

    def _evict_telemetry(self, to_free: int, now: float, why: str) -> int:
        """Evict telemetry by policy until ``to_free`` bytes are free; return the bytes freed."""
        conn = self._database.db.conn
        victims = policy.oldest_telemetry(dropping.telemetry_oldest_first(conn), to_free)
        freed = sum(victim.size for victim in victims)
        if victims:
            _LOGGER.warning("%s: evicted %d telemetry messages (%d bytes)", why, len(victims), freed)
            self._drop("evicted", victims, now)
        return freed

    def _drop_expired(self, now: float) -> int:
        rows = policy.expired(dropping.expiring_before(self._database.db.conn, now), now)
        self._drop("expired", rows, now)
        return len(rows)

    def _drop(self, reason: GapReason, rows: Sequence[Queued], now: float) -> None:
        """Delete rows (inside the caller's transaction), count them and report them as gaps."""
        if not rows:
            return
        dropping.delete(self._database.db.conn, rows)
        self._bytes -= sum(row.size for row in rows)
        for row in rows:  # if one was in flight, its acknowledgement must not count it again
            self._sizes.pop(row.id, None)
        self.dropped[reason] += len(rows)
        stream_of = self._topics.stream_of
        self._insert_gaps(GapRun.runs(reason, [(r.boot_id, stream_of(r.topic), r.seq) for r in rows]), now)

    # ------------------------------------------------------------------ sending

    def due(self, limit: int, skip: Iterable[int] = ()) -> list[OutboxRow]:
        """The next ``limit`` rows to send, most urgent first, ignoring those already in flight."""
        rows = sending.due(self._database, limit, skip)
        with self._lock:
            self._sizes.update((row.id, len(row.payload)) for row in rows)
        return rows

    def expire(self, now: float) -> int:
        """Delete rows past their expiry (notifications that can no longer help), each reported
        as a gap; return how many. Run by the sender before it fills its window, so an expired
        notification is dropped, not sent late."""
        if not dropping.any_expired(self._database, now):
            return 0
        with self._database.transaction(), self._lock:
            return self._drop_expired(now)

    @property
    def clock_trusted(self) -> bool:
        return self._stamper.clock_trusted

    @clock_trusted.setter
    def clock_trusted(self, trusted: bool) -> None:
        """Whether rows made from now on say the agent trusted its clock (core.wallclock)."""
        self._stamper.clock_trusted = trusted

    def shift(self, delta_s: float) -> None:
        """The agent followed a wall-clock step: queued rows' creation and expiry move with it,
        so a notification still expires its TTL after it was made, not early or late by the
        step, and the queue's age keeps its meaning."""
        with self._database.transaction() as conn, self._lock:
            conn.execute(
                "UPDATE outbox SET created = created + ?, expires = expires + ? ", (delta_s, delta_s)
            )

    def dead_letter(self, after_attempts: int, now: float) -> int:
        """Move rows the broker refused ``after_attempts`` times to the dead-letter table, each
        reported as a gap, so one poisoned message cannot hold up the rest; return how many."""
        with self._database.transaction() as conn, self._lock:
            rows = dropping.refused_at_least(conn, after_attempts)
            if not rows:
                return 0
            dropping.copy_to_dead_letter(conn, rows, now)
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
        """Delete acknowledged rows and return the bytes freed: rows handed out by ``due`` have
        their sizes in memory, so no SELECT is needed (see ``sending.delete``)."""
        with self._lock:
            sizes = [self._sizes.pop(i, None) for i in ids]
        if None in sizes:  # not from due() (or forgotten): count from the file
            return sending.delete_counting(self._database, ids)
        sending.delete(self._database, ids)
        return sum(cast(list[int], sizes))

    def record_failure(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        with self._database.transaction() as conn:
            conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])

    # ------------------------------------------------------------------ erasure and figures

    def erase_customer(self, customer_id: str) -> int:
        """Delete the unsent rows whose payload names the customer (an erasure); return how many.
        Joins the caller's transaction, so the receipt it enqueues commits with the deletion."""
        with self._database.transaction() as conn, self._lock:
            self._undo_on_rollback()
            erased = dropping.delete_naming(conn, customer_id)
            self._bytes -= sum(size for _, size in erased)
            for row_id, _ in erased:  # in flight: its acknowledgement must not count it again
                self._sizes.pop(row_id, None)
        return len(erased)

    def depth(self) -> int:
        with self._database.lock:
            return tables.queued(self._database.db.conn)

    def queue_figures(self) -> tuple[dict[int, int], float | None]:
        """Queued messages by priority, and when the oldest was enqueued (its age says how far
        behind HQ is): the same queries ``edge-agent status`` runs on the file."""
        with self._database.lock:
            return tables.queue_figures(self._database.db.conn)

    def peek_payloads(self) -> list[dict[str, Any]]:
        """Every queued payload, decoded (status view and tests)."""
        with self._database.lock:
            rows = self._database.db.conn.execute("SELECT payload FROM outbox ORDER BY id").fetchall()
        return [json.loads(r[0]) for r in rows]

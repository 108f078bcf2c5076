"""HQ's database as one SQLite file (the default): WAL, so several consumer processes on one
machine share it, each commit waiting for the write lock rather than failing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import sqlite_utils

from edge_agent.hq.store import NO_BOOT, Batch, Gap, new_events, seq_counts

# 1: events, rejected, store_status (the first consumer's tables; a file without a
# schema_version table has them). 2: gaps, filled from the events already stored.
SCHEMA_VERSION = 2
_LOOKUP_CHUNK = 900  # below SQLite's limit of host parameters per statement on every build

_GAPS_TABLE = (
    "CREATE TABLE IF NOT EXISTS gaps (store_id TEXT NOT NULL, boot_id TEXT NOT NULL, stream TEXT NOT NULL, "
    "received INTEGER NOT NULL, highest_seq INTEGER NOT NULL, "
    "missing INTEGER GENERATED ALWAYS AS (highest_seq - received) STORED, "
    "PRIMARY KEY (store_id, boot_id, stream))"
)
_UPSERT_GAP = (
    "INSERT INTO gaps (store_id, boot_id, stream, received, highest_seq) VALUES (?,?,?,?,?) "
    "ON CONFLICT (store_id, boot_id, stream) DO UPDATE SET received = received + excluded.received, "
    "highest_seq = max(highest_seq, excluded.highest_seq)"
)
# Newest first, by ts; but a last will is dated when its connection was made (MQTT fixes it at
# CONNECT), before that connection's heartbeats: it wins over the status it names by ``since``.
_UPSERT_STATUS = (
    "INSERT INTO store_status VALUES (?,?,?,?) ON CONFLICT(store_id) DO UPDATE SET "
    "ts=excluded.ts, state=excluded.state, payload=excluded.payload "
    "WHERE excluded.ts >= store_status.ts OR (json_extract(excluded.payload, '$.will') "
    "AND json_extract(excluded.payload, '$.since') = json_extract(store_status.payload, '$.since'))"
)


def open_hq_database(path: Path) -> sqlite_utils.Database:
    """The HQ store: one file shared by every consumer of a group (WAL, waits for the lock),
    its tables created or migrated to ``SCHEMA_VERSION``."""
    db = sqlite_utils.Database(path)
    db.conn.execute("PRAGMA journal_mode=WAL")
    db.conn.execute("PRAGMA busy_timeout=30000")
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is not None and row[0] >= SCHEMA_VERSION:
        return db
    conn.execute("BEGIN IMMEDIATE")  # one consumer migrates, the others wait and find it done
    try:
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        version = 0 if row is None else row[0]
        if version < 1:
            _create_first_tables(db)
        if version < 2:
            conn.execute(_GAPS_TABLE)
            conn.execute(
                "INSERT OR REPLACE INTO gaps (store_id, boot_id, stream, received, highest_seq) "
                "SELECT store_id, coalesce(boot_id, ?), stream, count(*), max(seq) FROM events "
                "WHERE seq IS NOT NULL GROUP BY 1, 2, 3",
                (NO_BOOT,),
            )
        conn.execute("DELETE FROM schema_version")
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return db


def _create_first_tables(db: sqlite_utils.Database) -> None:
    db.table("events").create(
        {"event_id": str, "store_id": str, "boot_id": str, "stream": str, "seq": int, "schema": str,
         "ts": str, "payload": str, "received": float, "consumer": str},
        pk="event_id", if_not_exists=True,
    )  # fmt: skip
    db.table("events").create_index(["store_id", "boot_id", "stream", "seq"], if_not_exists=True)
    db.table("rejected").create(
        {"topic": str, "reason": str, "payload_bytes": int, "received": float}, if_not_exists=True
    )
    db.table("store_status").create(
        {"store_id": str, "ts": str, "state": str, "payload": str}, pk="store_id", if_not_exists=True
    )


class SqliteStore:
    transient_errors: tuple[type[Exception], ...] = ()  # a locked or full file is not waited out

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_hq_database(path)

    def write(self, batch: Batch) -> int:
        conn = self._db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            fresh = new_events(batch.events, self._stored_among([r.event_id for r in batch.events]))
            conn.executemany(
                "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(r.event_id, r.store_id, r.boot_id, r.stream, r.seq, r.schema, r.ts.isoformat(), r.payload,
                  r.received, r.consumer) for r in fresh],
            )  # fmt: skip
            conn.executemany(_UPSERT_GAP, seq_counts(fresh))
            conn.executemany(
                "INSERT INTO rejected VALUES (?,?,?,?)",
                [(r.topic, r.reason, r.payload_bytes, r.received) for r in batch.rejects],
            )
            conn.executemany(
                _UPSERT_STATUS, [(s.store_id, s.ts.isoformat(), s.state, s.payload) for s in batch.statuses]
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(fresh)

    def _stored_among(self, event_ids: list[str]) -> set[str]:
        """Which of ``event_ids`` are already stored (inside the write transaction: no race)."""
        found: set[str] = set()
        for start in range(0, len(event_ids), _LOOKUP_CHUNK):
            chunk = event_ids[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT event_id FROM events WHERE event_id IN ({marks})"  # only ? marks
            found.update(row[0] for row in self._db.conn.execute(query, chunk))
        return found

    def events(self) -> Iterator[tuple[str, str, str]]:
        yield from self._db.conn.execute("SELECT store_id, schema, payload FROM events")

    def gaps(self) -> list[Gap]:
        rows = self._db.conn.execute(
            "SELECT store_id, boot_id, stream, missing, highest_seq FROM gaps WHERE missing != 0 "
            "ORDER BY store_id, boot_id, stream"
        )
        return [Gap(s, b if b != NO_BOOT else None, st, m, top) for s, b, st, m, top in rows]

    def statuses(self) -> Iterator[tuple[str, str]]:
        yield from self._db.conn.execute("SELECT store_id, state FROM store_status")

    def close(self) -> None:
        self._db.conn.close()

    @property
    def connection(self) -> sqlite3.Connection:
        return self._db.conn

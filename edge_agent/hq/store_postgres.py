"""HQ's database on PostgreSQL (psycopg 3): several consumer instances write one database,
analysts query it. The events table is partitioned by the event's day (UTC), partitions made on
demand; each event is stored once however many times it arrives and whichever instance gets it.

psycopg is imported here only: it is HQ's extra (``pip install edge-agent[hq]``), never the
store's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import errors, sql

from edge_agent.hq.store import (
    NO_BOOT,
    Batch,
    EventRow,
    Gap,
    StoreUnavailable,
    describe,
    new_events,
    seq_counts,
)

_LOGGER = logging.getLogger(__name__)
SCHEMA_VERSION = 1
# pg_advisory_xact_lock keys: one migrator at a time, one partition creator at a time.
_MIGRATION_LOCK = 0x6864_0001
_PARTITION_LOCK = 0x6864_0002
_PARTITION_PREFIX = "events_p"

# A unique index on a partitioned table must contain the partition key, so events' own primary
# key (event_id, day) only makes event_id unique within one day's partition, and a resend dated
# another day (the store's clock was stepped, the payload's ts differs) would slip through.
# event_id is made unique across the whole table by event_ids, not partitioned: each batch
# inserts its ids there first (ON CONFLICT DO NOTHING RETURNING event_id), and only the events
# whose id came back as new are inserted into events, in the same transaction. A concurrent
# instance inserting the same id waits on that row's index entry until the first commits, then
# finds it taken. Ids go in sorted, so two instances never lock each other's ids in opposite
# orders (no deadlock).
_SCHEMA_V1 = (
    "CREATE SEQUENCE events_arrival",
    "CREATE TABLE event_ids (event_id text PRIMARY KEY, day date NOT NULL)",
    "CREATE TABLE events (day date NOT NULL, event_id text NOT NULL, store_id text NOT NULL, boot_id text, "
    "stream text NOT NULL, seq bigint, schema text NOT NULL, ts timestamptz NOT NULL, payload json NOT NULL, "
    "received timestamptz NOT NULL, consumer text NOT NULL, "
    "arrival bigint NOT NULL DEFAULT nextval('events_arrival'), PRIMARY KEY (event_id, day)) "
    "PARTITION BY RANGE (day)",
    "CREATE INDEX events_stream_seq ON events (store_id, boot_id, stream, seq)",
    "CREATE TABLE rejected (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, topic text NOT NULL, "
    "reason text NOT NULL, payload_bytes integer NOT NULL, received timestamptz NOT NULL)",
    "CREATE TABLE store_status (store_id text PRIMARY KEY, ts timestamptz NOT NULL, state text NOT NULL, "
    "payload json NOT NULL)",
    "CREATE TABLE gaps (store_id text NOT NULL, boot_id text NOT NULL, stream text NOT NULL, "
    "received bigint NOT NULL, highest_seq bigint NOT NULL, "
    "missing bigint GENERATED ALWAYS AS (highest_seq - received) STORED, "
    "PRIMARY KEY (store_id, boot_id, stream))",
)
MIGRATIONS: tuple[tuple[str, ...], ...] = (_SCHEMA_V1,)  # MIGRATIONS[n] takes version n to n + 1

_INSERT_IDS = (
    "INSERT INTO event_ids (event_id, day) SELECT * FROM unnest(%s::text[], %s::date[]) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)
_INSERT_EVENTS = (
    "INSERT INTO events (day, event_id, store_id, boot_id, stream, seq, schema, ts, payload, received, "
    "consumer) SELECT d, e, s, b, st, q, sc, t, p::json, to_timestamp(r), c FROM unnest(%s::date[], "
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::timestamptz[], "
    "%s::text[], %s::float8[], %s::text[]) AS u(d, e, s, b, st, q, sc, t, p, r, c)"
)
_UPSERT_GAPS = (
    "INSERT INTO gaps (store_id, boot_id, stream, received, highest_seq) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[]) "
    "ON CONFLICT (store_id, boot_id, stream) DO UPDATE SET received = gaps.received + excluded.received, "
    "highest_seq = GREATEST(gaps.highest_seq, excluded.highest_seq)"
)
# As in SQLite: newest by ts, but a last will (dated at CONNECT) wins over the status it names.
_UPSERT_STATUS = (
    "INSERT INTO store_status VALUES (%s, %s, %s, %s::json) ON CONFLICT (store_id) DO UPDATE SET "
    "ts = excluded.ts, state = excluded.state, payload = excluded.payload "
    "WHERE excluded.ts >= store_status.ts OR (coalesce(excluded.payload->>'will', '') = 'true' "
    "AND excluded.payload->>'since' = store_status.payload->>'since')"
)


def _text(value: str) -> str:
    """PostgreSQL's text holds no NUL character, which JSON can carry (``\\u0000``): it is kept
    as that escape, so the row is stored rather than the whole batch refused."""
    return value.replace("\x00", "\\u0000")


def _day(ts: datetime) -> date:
    return ts.astimezone(UTC).date()


class PostgresStore:
    transient_errors: tuple[type[Exception], ...] = (psycopg.OperationalError,)

    def __init__(self, url: str, application: str = "edge-agent-hq") -> None:
        self._url = url
        self._application = application
        self._days: set[date] = set()  # partitions known to exist
        try:
            self._conn = self._connect()
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{describe(url)}: {str(exc).strip()}") from exc

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self._url, application_name=self._application, connect_timeout=10)
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        self._migrate(conn)
        self._days = self._existing_partitions(conn)
        return conn

    @staticmethod
    def _migrate(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = 0 if row is None else int(str(row[0]))
            if version > len(MIGRATIONS):
                raise RuntimeError(f"the database's schema is version {version}, newer than this consumer's")
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            if version < len(MIGRATIONS):
                conn.execute("DELETE FROM schema_version")
                conn.execute("INSERT INTO schema_version VALUES (%s)", (len(MIGRATIONS),))
                _LOGGER.info("HQ database schema migrated from version %d to %d", version, len(MIGRATIONS))

    @staticmethod
    def _existing_partitions(conn: psycopg.Connection[tuple[object, ...]]) -> set[date]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        ).fetchall()
        conn.commit()
        days = set()
        for (name,) in rows:
            suffix = str(name).removeprefix(_PARTITION_PREFIX)
            if suffix.isdigit() and len(suffix) == 8:
                days.add(datetime.strptime(suffix, "%Y%m%d").replace(tzinfo=UTC).date())
        return days

    def ensure_partitions(self, days: Iterable[date]) -> None:
        """Create the partitions of ``days`` that may not exist yet, each in its own short
        transaction (never inside a batch's: that would hold the parent table's lock while
        other instances wait to insert). Instances racing for the same day take turns on an
        advisory lock; the later one finds the table made."""
        for day in sorted(set(days) - self._days):
            name = f"{_PARTITION_PREFIX}{day:%Y%m%d}"
            upper = sql.Literal(day + timedelta(days=1)) if day < date.max else sql.SQL("MAXVALUE")
            statement = sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})"
            ).format(sql.Identifier(name), sql.Literal(day), upper)
            try:
                with self._conn.transaction():
                    self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
                    self._conn.execute(statement)
            except (errors.DuplicateTable, errors.UniqueViolation):
                pass  # made by an instance that took no lock (an older one, or by hand)
            self._days.add(day)

    def write(self, batch: Batch) -> int:
        if self._conn.closed or self._conn.broken:
            _LOGGER.info("reconnecting to the HQ database")
            self._conn = self._connect()
        candidates = new_events(batch.events, set())
        self.ensure_partitions(_day(r.ts) for r in candidates)
        conn = self._conn
        with conn.transaction(), conn.cursor() as cursor:
            fresh: list[EventRow] = []
            if candidates:
                ordered = sorted(candidates, key=lambda r: r.event_id)
                cursor.execute(
                    _INSERT_IDS, ([_text(r.event_id) for r in ordered], [_day(r.ts) for r in ordered])
                )
                new_ids = {str(row[0]) for row in cursor.fetchall()}
                fresh = [r for r in candidates if _text(r.event_id) in new_ids]  # arrival order kept
            if fresh:
                cursor.execute(_INSERT_EVENTS, _columns(fresh))
            gaps = seq_counts(fresh)
            if gaps:
                cursor.execute(_UPSERT_GAPS, [[_text(str(g[i])) for g in gaps] for i in range(3)]
                               + [[g[3] for g in gaps], [g[4] for g in gaps]])  # fmt: skip
            if batch.rejects:
                cursor.executemany(
                    "INSERT INTO rejected (topic, reason, payload_bytes, received) "
                    "VALUES (%s, %s, %s, to_timestamp(%s))",
                    [(_text(r.topic), _text(r.reason), r.payload_bytes, r.received) for r in batch.rejects],
                )
            if batch.statuses:
                cursor.executemany(
                    _UPSERT_STATUS,
                    [(_text(s.store_id), s.ts, _text(s.state), s.payload)
                     for s in sorted(batch.statuses, key=lambda s: s.store_id)],
                )  # fmt: skip
        return len(fresh)

    def events(self) -> Iterator[tuple[str, str, str]]:
        with self._conn.transaction(), self._conn.cursor(name="hq_report_events") as cursor:
            cursor.itersize = 5000
            cursor.execute("SELECT store_id, schema, payload::text FROM events ORDER BY arrival")
            for store_id, schema, payload in cursor:
                yield str(store_id), str(schema), str(payload)

    def gaps(self) -> list[Gap]:
        with self._conn.transaction():
            rows = self._conn.execute(
                "SELECT store_id, boot_id, stream, missing, highest_seq FROM gaps WHERE missing != 0 "
                'ORDER BY store_id COLLATE "C", boot_id COLLATE "C", stream COLLATE "C"'
            ).fetchall()
        return [
            Gap(str(s), None if b == NO_BOOT else str(b), str(st), int(str(m)), int(str(top)))
            for s, b, st, m, top in rows
        ]

    def statuses(self) -> Iterator[tuple[str, str]]:
        with self._conn.transaction():
            rows = self._conn.execute("SELECT store_id, state FROM store_status").fetchall()
        for store_id, state in rows:
            yield str(store_id), str(state)

    def close(self) -> None:
        self._conn.close()


def _columns(rows: list[EventRow]) -> list[list[object]]:
    """``rows`` as the column arrays of ``_INSERT_EVENTS``."""
    return [
        [_day(r.ts) for r in rows], [_text(r.event_id) for r in rows], [_text(r.store_id) for r in rows],
        [None if r.boot_id is None else _text(r.boot_id) for r in rows], [_text(r.stream) for r in rows],
        [r.seq for r in rows], [r.schema for r in rows], [r.ts for r in rows], [r.payload for r in rows],
        [r.received for r in rows], [_text(r.consumer) for r in rows],
    ]  # fmt: skip

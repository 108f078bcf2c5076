"""Messages turned into outbox rows and inserted: the enqueue hot path.

Each message is serialised once, stamped with its boot id and sequence number in the text, and
inserted with as few bound values as its class allows. Every choice here was measured
(benchmarks/outbox.py has the enqueue figures); the figures sit beside what they justify.
"""

from __future__ import annotations

import functools
import itertools
import json
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final, NamedTuple

from pydantic_core import SchemaSerializer

from edge_agent.core.events import Message
from edge_agent.core.topics import Topics

# How a message not yet stored serialises its boot_id and seq (fields of Message, in this order).
_UNSTAMPED = b'"boot_id":null,"seq":null'
INSERT = "INSERT INTO outbox (topic, payload, priority, retain, created, expires) VALUES "
# A run of at least this many rows of one class gets its own statement, which binds the columns
# they share once: a statement costs ~20 us to execute, and binding four values fewer saves ~1.1 us
# a row (measured inserting groups of 500 visits both ways, interleaved).
MIN_RUN = 32
# Rows per statement at most: 3,000 parameters, well inside SQLite's 32,766.
INSERT_CHUNK = 500
# What a row that never expires binds for its expiry in a mixed statement (SQL turns it into NULL):
# binding None goes through sqlite3's adapter lookup (see Row).
_NO_EXPIRY = float("-inf")


class Kind(NamedTuple):
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
Row = tuple[bytearray, float | None, int, Kind]
PAYLOAD: Final = 0
EXPIRES: Final = 1
SEQ: Final = 2
KIND: Final = 3


class Stamper:
    """Serialises messages into rows, with the per-class ``Kind`` cache."""

    def __init__(self, topics: Topics) -> None:
        self._topics = topics
        self._kinds: dict[type[Message], Kind] = {}
        # False while the agent distrusts its wall clock (core.wallclock): every row made then
        # says so, for HQ to weigh its times.
        self.clock_trusted = True

    def stamp(
        self, messages: Sequence[Message], boot_id: str | None, last_seq: dict[str, int]
    ) -> tuple[list[Row], dict[str, int]]:
        """Serialised rows with ``boot_id`` and the next ``seq`` of each stream (after
        ``last_seq``) stamped in, and the last number each stream took (for ``last_seq`` once the
        rows are in).

        The message is serialised once and the two placeholders it carries (``null``, as every
        message the core makes does) are replaced in the text: copying a frozen pydantic model to
        set them cost more than the SQLite insert itself (benchmarks/outbox.py).
        """
        sequence = dict(last_seq)
        stamp = b'"boot_id":' + json.dumps(boot_id).encode().replace(b"%", b"%%") + b',"seq":%d'
        trusted = None if self.clock_trusted else False
        if trusted is False:
            stamp += b',"clock_trusted":false'  # the field that follows seq, left out when None
        kinds = self._kinds
        rows: list[Row] = []
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
                update = {"boot_id": boot_id, "seq": number, "clock_trusted": trusted}
                payload = bytearray(m.model_copy(update=update).to_json())
            append((payload, m.expires_at if expiring else None, number, kind))
        numbered = {stream: n for stream, n in sequence.items() if last_seq.get(stream) != n}
        return rows, numbered

    def _kind(self, cls: type[Message]) -> Kind:
        kind = Kind(cls.stream, self._topics.uplink(cls.stream), cls.priority, int(cls.retain),
                    cls.__pydantic_serializer__, cls.expires_at is not Message.expires_at)  # fmt: skip
        self._kinds[cls] = kind
        return kind


def insert(conn: sqlite3.Connection, rows: Sequence[Row], now: float) -> None:
    """Insert rows in order: a long run of one class with a statement that binds what the
    class shares once, the rest with every column bound per row. Binding is much of what a
    multi-row INSERT spends its time on: with every column bound per row it was 35-55 %
    faster than executemany, and binding only the payload per row took a further 1.1 us off
    each row of 6.6 (benchmarks/outbox.py has the enqueue figures)."""
    kinds = [row[KIND] for row in rows]
    # Where each run of rows of one class begins, and the end.
    bounds = [0, *(i for i in range(1, len(rows)) if kinds[i] is not kinds[i - 1]), len(rows)]
    done = 0  # rows before this one are inserted
    for begin, end in itertools.pairwise(bounds):
        if end - begin >= MIN_RUN:  # the rows before it (in shorter runs) first, in order
            _insert_mixed(conn, rows[done:begin], now)
            _insert_run(conn, rows[begin:end], now)
            done = end
    _insert_mixed(conn, rows[done:], now)


def _chunks(rows: Sequence[Row]) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), INSERT_CHUNK):
        yield rows[start : start + INSERT_CHUNK]


def _insert_mixed(conn: sqlite3.Connection, rows: Sequence[Row], now: float) -> None:
    for piece in _chunks(rows):
        values: list[object] = [now, _NO_EXPIRY]
        for payload, expires, _, kind in piece:
            expiry = _NO_EXPIRY if expires is None else expires
            values += (kind.topic, payload, kind.priority, kind.retain, expiry)
        conn.execute(_mixed_statement(len(piece)), values)


def _insert_run(conn: sqlite3.Connection, rows: Sequence[Row], now: float) -> None:
    kind = rows[0][KIND]
    shared: list[object] = [kind.topic, kind.priority, kind.retain, now]
    for piece in _chunks(rows):
        if kind.expiring:
            values = shared + [value for payload, expires, _, _ in piece for value in (payload, expires)]
        else:
            values = shared + [row[PAYLOAD] for row in piece]
        conn.execute(_run_statement(len(piece), kind.expiring), values)


@functools.lru_cache(maxsize=64)
def _mixed_statement(rows: int) -> str:
    """Rows of different classes in turn: created (?1) bound once, the rest per row."""
    values = (f"(?{k},?{k + 1},?{k + 2},?{k + 3},?1,NULLIF(?{k + 4},?2))" for k in range(3, 3 + 5 * rows, 5))
    return INSERT + ",".join(values)


@functools.lru_cache(maxsize=64)
def _run_statement(rows: int, expiring: bool) -> str:
    """Rows of one class: topic, priority, retain and created bound once (?1-?4), then each
    row's payload (and expiry, for classes that expire)."""
    if expiring:
        values = (f"(?1,?{5 + 2 * i},?2,?3,?4,?{6 + 2 * i})" for i in range(rows))
    else:
        values = (f"(?1,?{5 + i},?2,?3,?4,NULL)" for i in range(rows))
    return INSERT + ",".join(values)

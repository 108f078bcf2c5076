"""The SQL of dropping rows: fetching the candidates the policy chooses from, and deleting or
moving what it chose (expired, evicted, dead-lettered or erased rows). All of it runs inside
the caller's transaction on the main connection, except the sender's cheap expiry test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from edge_agent.core.const import PRIORITY_TELEMETRY
from edge_agent.storage.database import Database, names_customer

# Rows read per round while choosing telemetry to evict.
EVICTION_BATCH = 2000
# What the policy weighs (id, priority, size, expiry) and what a gap record names (topic, boot, seq).
_QUEUED = (
    "SELECT id, priority, length(payload), expires, topic, "
    "json_extract(CAST(payload AS TEXT), '$.boot_id'), json_extract(CAST(payload AS TEXT), '$.seq') "
    "FROM outbox "
)


class Queued(NamedTuple):
    """A queued row as a candidate for dropping (a ``policy.Candidate``)."""

    id: int
    priority: int
    size: int
    expires: float | None
    topic: str
    boot_id: str | None
    seq: int | None


def any_expired(database: Database, now: float) -> bool:
    """A cheap test on the sender's connection first: most sweeps find nothing."""
    with database.sender_lock:
        found = database.sender.execute(
            "SELECT 1 FROM outbox WHERE expires IS NOT NULL AND expires < ? LIMIT 1", (now,)
        ).fetchone()
    return found is not None


def expiring_before(conn: sqlite3.Connection, now: float) -> list[Queued]:
    """Rows whose expiry is before ``now`` (through the partial index of expiring rows)."""
    rows = conn.execute(_QUEUED + "WHERE expires IS NOT NULL AND expires < ?", (now,)).fetchall()
    return [Queued._make(row) for row in rows]


def telemetry_oldest_first(conn: sqlite3.Connection) -> Iterator[Queued]:
    """Queued telemetry in queue order, read in batches as far as the reader goes."""
    last_id = 0
    while True:
        rows = conn.execute(
            _QUEUED + "WHERE priority = ? AND id > ? ORDER BY id LIMIT ?",
            (PRIORITY_TELEMETRY, last_id, EVICTION_BATCH),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield Queued._make(row)
        last_id = rows[-1][0]


def refused_at_least(conn: sqlite3.Connection, attempts: int) -> list[Queued]:
    """Rows the broker refused ``attempts`` times or more."""
    return [Queued._make(row) for row in conn.execute(_QUEUED + "WHERE attempts >= ?", (attempts,))]


def delete(conn: sqlite3.Connection, rows: Sequence[Queued]) -> None:
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(row.id,) for row in rows])


def copy_to_dead_letter(conn: sqlite3.Connection, rows: Sequence[Queued], now: float) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO dead_letter SELECT id, topic, payload, attempts, ? FROM outbox WHERE id = ?",
        [(now, row.id) for row in rows],
    )


def delete_naming(conn: sqlite3.Connection, customer_id: str) -> list[tuple[int, int]]:
    """Delete the rows whose payload names the customer; (id, size) of each."""
    return conn.execute(
        "DELETE FROM outbox WHERE CAST(payload AS TEXT) LIKE ? ESCAPE '\\' RETURNING id, length(payload)",
        (names_customer(customer_id),),
    ).fetchall()

"""The durable outbox: every message is a row in SQLite before anything tries to send it.

paho's own queue is memory only, so it never becomes the buffer: the sender takes due rows by
priority then sequence, and a row is deleted only after the broker's PUBACK reported success.
A crash anywhere therefore means a resend (HQ deduplicates on ``event_id``), never a loss.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edge_agent.events import Message
from edge_agent.storage import Database
from edge_agent.topics import Topics


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    topic: str
    payload: bytes
    priority: int
    retain: bool


class Outbox:
    def __init__(self, database: Database, topics: Topics, boot_id: str | None = None) -> None:
        self._database = database
        self._topics = topics
        self.boot_id = boot_id
        self._seq: dict[str, int] = {}  # stream -> last sequence number of this boot
        self.enqueued = 0  # messages added since this process opened the outbox
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

    def add(self, messages: Sequence[Message], now: float) -> None:
        """Append messages; call inside ``Database.transaction`` to group them with other writes."""
        if not messages:
            return
        sequence = dict(self._seq)
        rows = []
        for m in messages:
            number = sequence[m.stream] = sequence.get(m.stream, 0) + 1
            stamped = m.model_copy(update={"boot_id": self.boot_id, "seq": number})
            rows.append(
                (
                    self._topics.uplink(m.stream),
                    stamped.to_json(),
                    m.priority,
                    int(m.retain),
                    now,
                    m.expires_at,
                )
            )
        with self._database.transaction() as conn:
            conn.executemany(
                "INSERT INTO outbox (topic, payload, priority, retain, created, expires) "
                "VALUES (?,?,?,?,?,?)",
                rows,
            )
        # Numbers are taken only once the rows are in: a failed insert leaves no false gap.
        self._seq = sequence
        self.enqueued += len(rows)

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
        """Delete rows past their expiry (notifications that can no longer help); return how many.

        Run by the sender before it fills its window, so an expired notification is dropped, not
        sent late. (Gap records for them, reported to HQ, come with the bounded outbox.)
        """
        with self._database.sender_transaction() as conn:
            return conn.execute(
                "DELETE FROM outbox WHERE expires IS NOT NULL AND expires < ?", (now,)
            ).rowcount

    def acknowledge(self, ids: Sequence[int]) -> None:
        """Delete rows the broker confirmed; one transaction for a whole batch of PUBACKs."""
        if not ids:
            return
        with self._database.sender_transaction() as conn:  # the sender's connection: see storage
            conn.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

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

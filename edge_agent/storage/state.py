"""What HQ told this store (customer registry, orders), kept in SQLite across restarts.

Written in the same transaction as the messages the change causes, so after a power cut either
both are there or neither is; the link acknowledges a downlink to the broker only after that
commit, so the broker redelivers anything we had not made durable.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from edge_agent.core.downlinks import (
    DOWNLINKS,
    CustomersDownlink,
    Downlink,
    DownlinkKind,
    DownlinkRegistry,
    Handlers,
    OrdersDownlink,
    Persistence,
)
from edge_agent.core.events import Message
from edge_agent.core.journey.durable import StateChange
from edge_agent.core.journey.rules import Order
from edge_agent.core.journey.touchpoints import touchpoint
from edge_agent.core.registry import IDENTITY_KEY_BYTES, Customer, CustomerPage
from edge_agent.storage.database import Database, names_customer

# How each kind kept in its own tables (Persistence.TABLE) is written.
TABLE_WRITERS: Handlers[StateStore, [sqlite3.Connection], None] = Handlers("state store")


class StateStore:
    def __init__(self, database: Database, downlinks: DownlinkRegistry = DOWNLINKS) -> None:
        self._database = database
        self._downlinks = downlinks
        logged = downlinks.kept(Persistence.LOG)
        self._logged_models = {d.schema: d.model for d in logged}
        # The logged kinds a compaction snapshot replaces (a snapshot has one row of each at most),
        # and those forgotten past the journey horizon instead.
        self._snapshot_kinds = tuple(d.schema for d in logged if d.snapshot)
        self._expiring_kinds = tuple(d.schema for d in logged if not d.snapshot)
        db = database.db
        db.table("customers").create(
            {"customer_id": str, "identity_key": bytes, "consent_service": int, "consent_marketing": int},
            pk="customer_id", if_not_exists=True,
        )  # fmt: skip
        db.table("orders").create(
            {"order_id": str, "customer_id": str, "status": str, "pickup_point": str,
             "pickup_zone": str, "version": int},
            pk="order_id", if_not_exists=True,
        )  # fmt: skip
        for column, kind in (("pickup_zone", str), ("version", int)):  # files from before they existed
            if column not in db.table("orders").columns_dict:
                db.table("orders").add_column(column, kind)
        # One line per touchpoint of a recognised customer's journey (edge-agent journey).
        db.table("journey").create(
            {"id": int, "customer_id": str, "visit_id": str, "ts": float, "kind": str, "detail": str},
            pk="id", if_not_exists=True,
        )  # fmt: skip
        db.table("journey").create_index(["customer_id", "ts"], if_not_exists=True)
        # The logged kinds (lists, planogram, offers, receipts) as applied, replayed into the rules at start.
        db.table("downlink_log").create(
            {"seq": int, "kind": str, "payload": str, "at": float}, pk="seq", if_not_exists=True
        )
        db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
        # Recognised customers' open visits (journey so far), so a restart does not split a visit.
        db.table("open_visits").create(
            {"visit_id": str, "customer_id": str, "record": str}, pk="visit_id", if_not_exists=True
        )
        db.table("open_visits").create_index(["customer_id"], if_not_exists=True)
        # The journey rules' promises in flight (coupons issued, outcomes pending, arrivals of
        # orders not collected, check-in messages held), so a restart keeps them.
        db.table("rule_state").create(
            {"kind": str, "key": str, "customer_id": str, "record": str},
            pk=("kind", "key"), if_not_exists=True,
        )  # fmt: skip
        db.table("rule_state").create_index(["customer_id"], if_not_exists=True)

    def apply(self, downlink: Downlink, now: float = 0.0) -> None:
        """Persist a validated downlink; call inside the transaction that enqueues its effects."""
        declaration = self._downlinks.of(downlink)
        with self._database.transaction() as conn:
            if declaration.persistence is Persistence.TABLE:
                TABLE_WRITERS.apply(self, downlink, conn)
            elif declaration.persistence is Persistence.LOG:
                self._log(conn, declaration, downlink, now)

    @TABLE_WRITERS.handles(CustomersDownlink)
    def _write_customers(self, downlink: CustomersDownlink, conn: sqlite3.Connection) -> None:
        # Erased or no longer consenting: their journey goes with them.
        gone = [*downlink.delete, *(r.customer_id for r in downlink.upsert if not r.consent.service
                                    and not r.consent.marketing)]  # fmt: skip
        conn.executemany("DELETE FROM journey WHERE customer_id = ?", [(c,) for c in gone])
        if downlink.full:
            kept = [r.customer_id for r in downlink.upsert]
            conn.execute(f"DELETE FROM journey WHERE customer_id NOT IN ({_marks(kept)})", kept)
            conn.execute("DELETE FROM customers")
        conn.executemany("DELETE FROM customers WHERE customer_id = ?", [(c,) for c in downlink.delete])
        conn.executemany(
            "INSERT OR REPLACE INTO customers VALUES (?,?,?,?)",
            [
                (r.customer_id, r.identity_key, int(r.consent.service), int(r.consent.marketing))
                for r in downlink.upsert
            ],
        )
        if downlink.version is not None:
            conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('registry_version', ?)", (str(downlink.version),)
            )

    @TABLE_WRITERS.handles(OrdersDownlink)
    def _write_orders(self, downlink: OrdersDownlink, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO orders (order_id, customer_id, status, pickup_point, pickup_zone, version) "
            "VALUES (?,?,?,?,?,?) ON CONFLICT(order_id) DO UPDATE SET "
            "customer_id=excluded.customer_id, status=excluded.status, "
            "pickup_point=excluded.pickup_point, pickup_zone=excluded.pickup_zone, "
            "version=excluded.version "
            "WHERE excluded.version >= coalesce(orders.version, 0)",
            [(o.order_id, o.customer_id, o.status, o.pickup_point, o.pickup_zone, o.version)
             for o in downlink.orders],
        )  # fmt: skip

    @staticmethod
    def _log(conn: sqlite3.Connection, declaration: DownlinkKind, downlink: Downlink, now: float) -> None:
        if getattr(downlink, "full", False):  # a full replacement makes earlier ones moot
            conn.execute("DELETE FROM downlink_log WHERE kind = ?", (declaration.schema,))
        conn.execute(
            "INSERT INTO downlink_log (kind, payload, at) VALUES (?, ?, ?)",
            (declaration.schema, downlink.model_dump_json(by_alias=True), now),
        )

    def compact_downlink_log(
        self, snapshot: Callable[[], Sequence[Downlink]], receipts_since: float, force: bool = False
    ) -> None:
        """Forget receipts (the logged kinds no snapshot replaces) older than ``receipts_since``
        and, once more lists, planogram or offers downlinks (the kinds a snapshot replaces) are
        logged than a snapshot holds (or with ``force``), replace them by ``snapshot()`` (what
        the rules hold now): the log stays the size of the store's current state, not of its
        history, and an unchanged log is not rewritten."""
        expiring, snapshot_kinds = self._expiring_kinds, self._snapshot_kinds
        with self._database.transaction() as conn:
            conn.execute(
                f"DELETE FROM downlink_log WHERE kind IN ({_marks(expiring)}) AND at < ?",
                (*expiring, receipts_since),
            )
            logged = conn.execute(
                f"SELECT count(*) FROM downlink_log WHERE kind IN ({_marks(snapshot_kinds)})", snapshot_kinds
            ).fetchone()[0]
            if logged <= len(snapshot_kinds) and not force:
                return
            conn.execute(f"DELETE FROM downlink_log WHERE kind IN ({_marks(snapshot_kinds)})", snapshot_kinds)
            conn.executemany(
                "INSERT INTO downlink_log (kind, payload, at) VALUES (?, ?, ?)",
                [
                    (self._downlinks.of(d).schema, d.model_dump_json(by_alias=True), receipts_since)
                    for d in snapshot()
                ],
            )

    def erase(self, customer_id: str) -> dict[str, int]:
        """Remove every trace of a customer from the state's tables; call inside the pipeline's
        transaction, beside ``Outbox.erase_customer`` (the unsent messages about them).

        Logged lists naming the customer are deleted too. With ``secure_delete`` the freed pages
        are zeroed; the caller then checkpoints the WAL so old copies of the pages leave it as well.
        """
        naming = [d.schema for d in self._downlinks.declarations if d.names_customers]
        with self._database.transaction() as conn:
            counts = {
                "registry": conn.execute(
                    "DELETE FROM customers WHERE customer_id = ?", (customer_id,)
                ).rowcount,
                "journey": conn.execute("DELETE FROM journey WHERE customer_id = ?", (customer_id,)).rowcount,
                "open_visit": conn.execute(
                    "DELETE FROM open_visits WHERE customer_id = ?", (customer_id,)
                ).rowcount,
            }
            conn.execute("DELETE FROM orders WHERE customer_id = ?", (customer_id,))
            conn.execute("DELETE FROM rule_state WHERE customer_id = ?", (customer_id,))
            conn.execute(
                f"DELETE FROM downlink_log WHERE kind IN ({','.join('?' * len(naming))}) "
                "AND payload LIKE ? ESCAPE '\\'",
                (*naming, names_customer(customer_id)),
            )
        return counts

    def customers(self, batch: int = 10_000) -> Iterator[Customer]:
        """Every stored customer, read in batches: a million rows never sit in memory at once."""
        last = ""
        while True:
            with self._database.lock:
                rows = self._database.db.conn.execute(
                    "SELECT * FROM customers WHERE customer_id > ? ORDER BY customer_id LIMIT ?",
                    (last, batch),
                ).fetchall()
            for row in rows:
                yield Customer(row[0], bytes(row[1]), bool(row[2]), bool(row[3]))
            if len(rows) < batch:
                return
            last = rows[-1][0]

    def customer_pages(self, batch: int = 65_536) -> Iterator[CustomerPage]:
        """Every stored customer, a page of columns at a time, for the start's bulk load
        (``StoreCore.load_registry``). A page is a range of ``batch`` rowids; SQLite joins its
        columns itself (``group_concat`` in one pass over the rows, so the columns agree row for
        row) and Python splits them in C: no tuple per row. The keys are joined as text and cast
        back to a blob, which gives their bytes back exactly in a UTF-8 database (the agent's;
        another encoding reads rows). A page that does not split cleanly (an id holding the
        separator, a key that is not 16 bytes) is read again row by row. A million customers
        here: 1.0-1.1 s to load as pages, 1.6 s as rows."""
        conn = self._database.db.conn
        with self._database.lock:
            utf8 = conn.execute("PRAGMA encoding").fetchone()[0] == "UTF-8"
            top = conn.execute("SELECT coalesce(max(rowid), 0) FROM customers").fetchone()[0]
        for last in range(0, top, batch):
            if not utf8:
                yield CustomerPage.of_rows(self._customer_rows_between(last, last + batch))
                continue
            with self._database.lock:
                count, ids, keys, flags = conn.execute(
                    "SELECT count(*), group_concat(customer_id, char(31)), "
                    "CAST(group_concat(identity_key, '') AS BLOB), "
                    "group_concat(1 + 2 * (consent_service != 0) + 4 * (consent_marketing != 0), '') "
                    "FROM customers WHERE rowid > ? AND rowid <= ?",
                    (last, last + batch),
                ).fetchone()
            if count:
                page = _page(count, ids, keys, flags)
                yield page or CustomerPage.of_rows(self._customer_rows_between(last, last + batch))

    def _customer_rows_between(self, after: int, last: int) -> list[tuple[str, bytes, int, int]]:
        with self._database.lock:
            return self._database.db.conn.execute(
                "SELECT customer_id, identity_key, consent_service, consent_marketing "
                "FROM customers WHERE rowid > ? AND rowid <= ? ORDER BY rowid",
                (after, last),
            ).fetchall()

    def orders(self) -> list[Order]:
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT order_id, customer_id, status, pickup_point, pickup_zone, coalesce(version, 0) "
                "FROM orders"
            ).fetchall()
        return [Order(*r) for r in rows]

    def logged_downlinks(self) -> list[Downlink]:
        """The logged kinds (lists, planogram, offers, receipts) in the order they were applied."""
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT kind, payload FROM downlink_log ORDER BY seq"
            ).fetchall()
        models = self._logged_models
        return [models[kind].model_validate_json(payload) for kind, payload in rows]

    def save_open_visits(self, records: Sequence[dict[str, Any]]) -> None:
        """Replace the kept open visits (a few dozen rows at most: recognised customers only)."""
        with self._database.transaction() as conn:
            conn.execute("DELETE FROM open_visits")
            conn.executemany(
                "INSERT INTO open_visits VALUES (?,?,?)",
                [(r["visit_id"], r["subject"], json.dumps(r, separators=(",", ":"))) for r in records],
            )

    def update_open_visits(self, customer_ids: Iterable[str], records: Sequence[dict[str, Any]]) -> None:
        """Replace the kept open visits of ``customer_ids`` by ``records`` (none: visit ended)."""
        with self._database.transaction() as conn:
            conn.executemany("DELETE FROM open_visits WHERE customer_id = ?", [(c,) for c in customer_ids])
            conn.executemany(
                "INSERT INTO open_visits VALUES (?,?,?)",
                [(r["visit_id"], r["subject"], json.dumps(r, separators=(",", ":"))) for r in records],
            )

    def open_visits(self) -> list[dict[str, Any]]:
        with self._database.lock:
            rows = self._database.db.conn.execute("SELECT record FROM open_visits").fetchall()
        return [json.loads(row[0]) for row in rows]

    def keep_rule_state(self, changes: Sequence[StateChange]) -> None:
        """Write the journey rules' state changes; call inside the transaction that enqueues the
        messages they belong to."""
        if not changes:
            return
        with self._database.transaction() as conn:
            conn.executemany(
                "DELETE FROM rule_state WHERE kind = ? AND key = ?",
                [(c.kind, c.key) for c in changes if c.record is None],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO rule_state VALUES (?,?,?,?)",
                [
                    (c.kind, c.key, c.customer_id, json.dumps(c.record, separators=(",", ":")))
                    for c in changes
                    if c.record is not None
                ],
            )

    def rule_state(self) -> list[StateChange]:
        """The journey rules' state kept at the last stop, as rows to restore."""
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT kind, key, customer_id, record FROM rule_state ORDER BY kind, key"
            ).fetchall()
        return [StateChange(kind, key, customer, json.loads(record)) for kind, key, customer, record in rows]

    def check_ins(self) -> list[tuple[str, float]]:
        """(customer, when) of every loyalty check-in the journey keeps, oldest first: a restart
        must not check a customer in twice on one local day."""
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT customer_id, ts FROM journey WHERE kind = 'check-in' ORDER BY ts"
            ).fetchall()
        return [(str(customer_id), float(ts)) for customer_id, ts in rows]

    def customer_notifications(self, within_s: float = 86400.0) -> list[tuple[str, str | None, float]]:
        """(customer, visit, when) of the customer notifications sent in the ``within_s`` before
        the journey's last line, oldest first: a restart must not reset the guards' minimum gap
        and caps (a day covers the daily cap)."""
        with self._database.lock:
            rows = self._database.db.conn.execute(
                "SELECT customer_id, visit_id, ts FROM journey WHERE kind = 'notification' "
                "AND detail LIKE 'to customer %' AND ts >= (SELECT max(ts) FROM journey) - ? ORDER BY ts",
                (within_s,),
            ).fetchall()
        return [
            (str(customer), None if visit is None else str(visit), float(ts)) for customer, visit, ts in rows
        ]

    def record_journey(self, messages: Sequence[Message]) -> None:
        """Keep the touchpoints among ``messages``; call inside the transaction that enqueues them."""
        rows = [
            (t.customer_id, t.visit_id, t.ts, t.kind, t.detail)
            for t in (touchpoint(m) for m in messages)
            if t is not None
        ]
        if rows:
            with self._database.transaction() as conn:
                conn.executemany(
                    "INSERT INTO journey (customer_id, visit_id, ts, kind, detail) VALUES (?,?,?,?,?)", rows
                )

    def shift_journey(self, delta_s: float, within_s: float = 86400.0) -> int:
        """The agent followed a wall-clock step: the journey lines of the ``within_s`` before the
        last one move with it, since a restart reads them back (the day's check-ins, the guards'
        last day of notifications) and must find them on the corrected clock, as the rules that
        held them in memory were. Older lines stay as they were kept (no restart reads them, and
        rewriting months of history for a step would hold up the loop). Returns lines moved."""
        with self._database.transaction() as conn:
            return conn.execute(
                "UPDATE journey SET ts = ts + ? WHERE ts >= (SELECT max(ts) FROM journey) - ?",
                (delta_s, within_s),
            ).rowcount

    def prune_journey(self, before: float) -> None:
        with self._database.transaction() as conn:
            conn.execute("DELETE FROM journey WHERE ts < ?", (before,))

    def put_meta(self, key: str, value: str) -> None:
        with self._database.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def registry_version(self) -> int | None:
        with self._database.lock:
            row = self._database.db.conn.execute(
                "SELECT value FROM meta WHERE key='registry_version'"
            ).fetchone()
        return int(row[0]) if row else None


def _marks(values: Sequence[object]) -> str:
    """The placeholders of an SQL ``IN (...)`` list of ``values``."""
    return ",".join("?" * len(values))


_FLAG_DIGITS = bytes.maketrans(b"01234567", bytes(range(8)))


def _page(count: int, ids: str | None, keys: bytes | None, flags: str | None) -> CustomerPage | None:
    """The page SQLite joined, or None where it does not split into ``count`` customers."""
    if ids is None or keys is None or flags is None:
        return None
    names = ids.split("\x1f")
    if len(names) != count or len(keys) != IDENTITY_KEY_BYTES * count or len(flags) != count:
        return None
    return CustomerPage(names, keys, flags.encode("ascii").translate(_FLAG_DIGITS))

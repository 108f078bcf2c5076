"""The SQLite outbox on a real file: ordering, acknowledgement, and surviving a restart."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from edge_agent.events import FootfallMessage, NotificationMessage, VisitMessage, utc
from edge_agent.outbox import Outbox
from edge_agent.storage import Database
from edge_agent.topics import Topics

TOPICS = Topics("retail/v1", "s1")


def _visit(n: int) -> VisitMessage:
    return VisitMessage(
        event_id=f"v{n}",
        store_id="s1",
        ts=utc(n),
        visit_id=f"visit{n}",
        customer_id="c",
        phase="started",
        started_at=utc(n),
        entry_receiver="entrance",
    )


def _footfall(n: int) -> FootfallMessage:
    return FootfallMessage(
        event_id=f"f{n}",
        store_id="s1",
        ts=utc(n),
        interval_start=utc(0),
        interval_end=utc(n),
        entries=1,
        exits=0,
        occupancy=1,
        customers_recognised=0,
    )


def _notification(n: int) -> NotificationMessage:
    return NotificationMessage(
        event_id=f"n{n}",
        store_id="s1",
        ts=utc(n),
        audience="customer",
        customer_id="c",
        visit_id="v",
        template="t",
        language="en",
        text="hi",
        expires=utc(n + 600),
    )


def test_notifications_outrank_visits_outrank_telemetry(tmp_path: Path) -> None:
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS)
    outbox.add([_footfall(1), _visit(2), _notification(3), _visit(4)], now=0)
    rows = outbox.due(10)
    assert [r.topic.rsplit("/", 1)[-1] for r in rows] == ["notifications", "visit", "visit", "footfall"]
    assert rows[0].topic == "retail/v1/stores/s1/notifications"


def test_rows_in_flight_are_skipped_and_acknowledged_rows_are_gone(tmp_path: Path) -> None:
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS)
    outbox.add([_visit(n) for n in range(5)], now=0)
    first = outbox.due(2)
    second = outbox.due(2, skip=[r.id for r in first])
    assert {r.id for r in first}.isdisjoint(r.id for r in second)
    outbox.acknowledge([r.id for r in first])
    assert outbox.depth() == 3


def test_unacknowledged_rows_survive_reopening_the_file(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    Outbox(database, TOPICS).add([_visit(n) for n in range(100)], now=0)
    database.close()
    reopened = Outbox(Database(tmp_path / "a.db"), TOPICS)
    assert reopened.depth() == 100
    assert [p["event_id"] for p in reopened.peek_payloads()] == [f"v{n}" for n in range(100)]


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    outbox = Outbox(database, TOPICS)
    try:
        with database.transaction():
            outbox.add([_visit(1)], now=0)
            raise RuntimeError("power cut mid-group")
    except RuntimeError:
        pass
    assert outbox.depth() == 0


def test_database_file_is_private_to_the_agent(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        Database(tmp_path / "a.db").close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.db").stat().st_mode) == 0o600


def test_journal_is_wal_with_full_sync(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    conn = database.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL

"""The SQLite outbox on a real file: ordering, acknowledgement, and surviving a restart."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.core.events import FootfallMessage, NotificationMessage, VisitMessage, utc
from edge_agent.core.topics import Topics
from edge_agent.storage.database import Database
from edge_agent.storage.outbox import Outbox

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
        database = Database(tmp_path / "a.db", reserve_bytes=1 << 20)
        Outbox(database, TOPICS).add([_visit(1)], now=0)
        # The WAL holds the same data as the file until a checkpoint: it must be as private.
        files = ["a.db", "a.db-wal", "a.db-shm", "a.db.reserve"]
        modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode) for name in files}
        database.close()
    finally:
        os.umask(old)
    assert modes == dict.fromkeys(files, 0o600)


def test_journal_is_wal_with_full_sync(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    conn = database.db.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def _gaps(outbox: Outbox) -> list[dict]:
    return [p for p in outbox.peek_payloads() if p["schema"] == "gap.v1"]


def test_at_the_cap_telemetry_is_evicted_oldest_first_and_reported_as_gaps(tmp_path: Path) -> None:
    size = len(_footfall(1).to_json()) + 80
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS, boot_id="b1", max_bytes=20 * size)
    outbox.add([_footfall(n) for n in range(1, 26)], now=0)  # 25 telemetry rows fit
    outbox.add([_visit(n) for n in range(1, 11)], now=1)  # 10 visits need the room of ~10 of them
    payloads = outbox.peek_payloads()
    visits = [p for p in payloads if p["schema"] == "visit.v1"]
    footfall = [p["seq"] for p in payloads if p["schema"] == "footfall.v1"]
    assert len(visits) == 10  # transactional: never evicted, all stored
    assert footfall
    assert footfall == list(range(footfall[0], 26))  # the oldest went, the newest stayed
    [gap] = _gaps(outbox)
    assert gap["reason"] == "evicted"
    assert (gap["dropped_boot_id"], gap["dropped_stream"]) == ("b1", "events/footfall")
    assert (gap["first_seq"], gap["last_seq"], gap["count"]) == (1, footfall[0] - 1, footfall[0] - 1)
    assert outbox.dropped["evicted"] == gap["count"]
    assert outbox.bytes <= 20 * size + len(json.dumps(gap)) + 200


def test_at_the_hard_cap_new_transactional_events_are_refused_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    size = len(_visit(1).to_json()) + 80
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS, boot_id="b1", max_bytes=5 * size)
    outbox.add([_visit(n) for n in range(1, 5)], now=0)
    outbox.add([_visit(n) for n in range(5, 9)], now=1)  # no telemetry to evict
    visits = [p for p in outbox.peek_payloads() if p["schema"] == "visit.v1"]
    assert [v["event_id"] for v in visits[:4]] == ["v1", "v2", "v3", "v4"]  # nothing already stored is lost
    assert outbox.alarm is not None
    assert "outbox full" in caplog.text
    refused = [g for g in _gaps(outbox) if g["reason"] == "refused"]
    assert sum(g["count"] for g in refused) == outbox.dropped["refused"] >= 1
    outbox.acknowledge([row.id for row in outbox.due(100)])  # HQ takes everything: space returns
    outbox.add([_visit(20)], now=2)
    assert outbox.alarm is None
    assert outbox.peek_payloads()[-1]["event_id"] == "v20"


def test_expired_and_dead_lettered_rows_become_gaps(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    outbox = Outbox(database, TOPICS, boot_id="b1")
    stale = NotificationMessage(
        event_id="n1", store_id="s1", ts=utc(0), audience="customer", customer_id="c", visit_id="v",
        template="t", language="en", text="x", expires=utc(10),
    )  # fmt: skip
    outbox.add([stale, _visit(1), _visit(2)], now=0)
    assert outbox.expire(now=5) == 0
    assert outbox.expire(now=11) == 1
    poisoned = [row.id for row in outbox.due(10) if row.topic.endswith("/events/visit")][:1]
    for _ in range(3):
        outbox.record_failure(poisoned)
    assert outbox.dead_letter(after_attempts=3, now=12) == 1
    reasons = {(g["reason"], g["dropped_stream"], g["first_seq"]) for g in _gaps(outbox)}
    assert reasons == {("expired", "notifications", 1), ("dead_letter", "events/visit", 1)}
    with database.lock:
        assert database.db.conn.execute("SELECT count(*) FROM dead_letter").fetchone()[0] == 1
    assert [p["event_id"] for p in outbox.peek_payloads() if p["schema"] == "visit.v1"] == ["v2"]


def test_due_returns_payload_bytes_exactly_even_when_one_is_not_text(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    outbox = Outbox(database, TOPICS, boot_id="b1")
    outbox.add([_notification(1).model_copy(update={"text": "Il tuo ordine è pronto"})], now=0)
    stored = database.db.conn.execute("SELECT payload FROM outbox").fetchone()[0]
    assert [row.payload for row in outbox.due(10)] == [stored]
    # A row that is not UTF-8 (salvaged from a damaged file, say) must not block the queue.
    database.db.conn.execute(
        "INSERT INTO outbox (topic, payload, priority, retain, created) VALUES ('t', X'FFFE00', 2, 0, 0)"
    )
    assert [row.payload for row in outbox.due(10)] == [stored, b"\xff\xfe\x00"]


def test_stamped_payload_is_exactly_the_message_with_boot_id_and_seq(tmp_path: Path) -> None:
    outbox = Outbox(Database(tmp_path / "a.db"), TOPICS, boot_id="b1")
    messages = [_visit(1), _notification(1), _footfall(1), _visit(2)]
    outbox.add(messages, now=0)
    stored = [row.payload for row in sorted(outbox.due(10), key=lambda row: row.id)]
    numbers = {"events/visit": [1, 2], "notifications": [1], "events/footfall": [1]}
    expected = [
        m.model_copy(update={"boot_id": "b1", "seq": numbers[m.stream].pop(0)}).to_json() for m in messages
    ]
    assert stored == expected


_MAKERS = {"visit": _visit, "footfall": _footfall, "notification": _notification}


@settings(max_examples=40, deadline=None)
@given(
    runs=st.lists(st.tuples(st.sampled_from(sorted(_MAKERS)), st.integers(1, 90)), min_size=1, max_size=16),
    already_queued=st.integers(0, 3),
)
def test_every_row_is_stored_exactly_and_in_order_however_classes_alternate(
    runs: list[tuple[str, int]], already_queued: int
) -> None:
    """Runs of one class long enough get their own statements, short ones share statements with
    every column bound, and more than 500 rows take several: whichever way a group is cut up,
    each row must hold its own message's columns, in the order the messages came."""
    messages = [_MAKERS[kind](n) for kind, length in runs for n in range(length)]
    with tempfile.TemporaryDirectory() as workdir:
        database = Database(Path(workdir) / "a.db")
        outbox = Outbox(database, TOPICS, boot_id="b1")
        earlier = [_visit(n) for n in range(already_queued)]
        outbox.add(earlier, now=5.0)
        outbox.add(messages, now=7.0)
        stored = database.db.conn.execute(
            "SELECT topic, payload, priority, retain, created, expires FROM outbox ORDER BY id"
        ).fetchall()
        numbers: dict[str, int] = {}
        expected = []
        for m, created in [(m, 5.0) for m in earlier] + [(m, 7.0) for m in messages]:
            numbers[m.stream] = numbers.get(m.stream, 0) + 1
            payload = m.model_copy(update={"boot_id": "b1", "seq": numbers[m.stream]}).to_json()
            expected.append((TOPICS.uplink(m.stream), payload, m.priority, 0, created, m.expires_at))
        assert stored == expected
        assert outbox.bytes == sum(len(row[1]) for row in expected)
        database.close()


def test_a_file_from_before_indexes_only_expiring_rows_once_reopened(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    Outbox(database, TOPICS, boot_id="b1").add([_notification(1), _visit(1)], now=0)
    conn = database.db.conn
    conn.execute("DROP INDEX idx_outbox_expiring")
    conn.execute("CREATE INDEX idx_outbox_expires ON outbox (expires)")  # as files made before had it
    database.close()
    database = Database(tmp_path / "a.db")
    outbox = Outbox(database, TOPICS, boot_id="b2")
    indexes = {row[1] for row in database.db.conn.execute("PRAGMA index_list(outbox)")}
    assert "idx_outbox_expires" not in indexes
    assert "idx_outbox_expiring" in indexes
    assert outbox.expire(now=10_000) == 1  # the notification, found through the new index
    schemas = {json.loads(row.payload)["schema"] for row in outbox.due(10)}
    assert "visit.v1" in schemas
    assert "notification.v1" not in schemas


def _file_bytes(database: Database) -> int:
    with database.lock:
        return database.db.conn.execute("SELECT coalesce(sum(length(payload)), 0) FROM outbox").fetchone()[0]


def test_erasing_a_customer_keeps_the_byte_count_without_a_recount(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    outbox = Outbox(database, TOPICS, boot_id="b1")
    outbox.add([_visit(1), _footfall(1), _notification(1), _visit(2)], now=0)
    in_flight = outbox.due(10)  # their sizes are in memory for the acknowledgement
    with database.transaction():
        assert outbox.erase_customer("c") == 3  # the visits and the notification name customer "c"
    assert [p["event_id"] for p in outbox.peek_payloads()] == ["f1"]
    assert outbox.bytes == _file_bytes(database)
    outbox.acknowledge([row.id for row in in_flight])  # erased rows among them: counted once
    assert outbox.bytes == _file_bytes(database) == 0
    outbox.add([_visit(3)], now=1)

    def erases_then_fails(conn: sqlite3.Connection) -> None:
        assert outbox.erase_customer("c") == 1
        raise RuntimeError("the erasure's transaction does not commit")

    with pytest.raises(RuntimeError):
        database.write(erases_then_fails)
    assert outbox.depth() == 1
    assert outbox.bytes == _file_bytes(database) > 0
    assert outbox.erase_customer("someone else") == 0


@given(st.text(st.sampled_from("ab_%\\x"), min_size=1, max_size=6))
@settings(max_examples=60)
def test_erasing_a_customer_never_takes_another_customers_rows(customer_id: str) -> None:
    """LIKE's "_" and "%" are wildcards: erasing "cust_1" once deleted "custX1"'s rows too."""
    others = {customer_id.replace("_", "X").replace("%", "YY"), customer_id + "x", "x" + customer_id}
    others.discard(customer_id)
    with tempfile.TemporaryDirectory() as workdir:
        database = Database(Path(workdir) / "a.db")
        outbox = Outbox(database, TOPICS, boot_id="b1")
        mine = _visit(1).model_copy(update={"customer_id": customer_id})
        theirs = [_visit(n + 2).model_copy(update={"customer_id": c}) for n, c in enumerate(sorted(others))]
        outbox.add([mine, *theirs], now=0)
        with database.transaction():
            assert outbox.erase_customer(customer_id) == 1
        assert sorted(p["customer_id"] for p in outbox.peek_payloads()) == sorted(others)
        database.close()

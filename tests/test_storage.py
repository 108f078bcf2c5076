"""The database file under the faults a store box sees, on real files: an unreadable file at
start, a transaction that does not commit, and the in-memory bookkeeping that must follow it.
(The full filesystem runs on a real tmpfs in tests/test_faults.py.)"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_agent.core.events import FootfallMessage, VisitMessage, utc
from edge_agent.core.topics import Topics
from edge_agent.storage import database as database_module
from edge_agent.storage.database import Database
from edge_agent.storage.outbox import Outbox

TOPICS = Topics("retail/v1", "s1")


def _visit(n: int) -> VisitMessage:
    return VisitMessage(
        event_id=f"v{n}", store_id="s1", ts=utc(n), visit_id=f"visit{n}", customer_id="c",
        phase="started", started_at=utc(n), entry_receiver="entrance",
    )  # fmt: skip


def _footfall(n: int) -> FootfallMessage:
    return FootfallMessage(
        event_id=f"f{n}", store_id="s1", ts=utc(n), interval_start=utc(0), interval_end=utc(n),
        entries=1, exits=0, occupancy=1, customers_recognised=0,
    )  # fmt: skip


def _queued(tmp_path: Path, n: int) -> Path:
    """A database whose outbox holds ``n`` unsent visits, closed as a stopped agent leaves it."""
    database = Database(tmp_path / "agent.db")
    Outbox(database, TOPICS, boot_id="b1").add([_visit(i) for i in range(n)], now=0)
    database.close()
    return tmp_path / "agent.db"


def _pages_of(path: Path, name: str) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT pageno FROM dbstat WHERE name = ?", (name,))]


def test_a_garbage_file_is_quarantined_replaced_and_alarmed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _queued(tmp_path, 3)
    with path.open("r+b") as file:
        file.write(os.urandom(100))  # the header page: "file is not a database"
    with caplog.at_level(logging.ERROR):
        database = Database(path)
    assert database.quarantined is not None
    assert database.quarantined.name.startswith("agent.db.corrupt-")
    assert database.quarantined.exists()
    assert "database unreadable at start" in database.alarms["database"]
    assert "database unreadable at start" in caplog.text
    # The new file works and is as private as the first.
    outbox = Outbox(database, TOPICS, boot_id="b2")
    outbox.add([_visit(9)], now=1)
    assert [p["event_id"] for p in outbox.peek_payloads()] == ["v9"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_unsent_messages_are_salvaged_from_a_quarantined_file(tmp_path: Path) -> None:
    path = _queued(tmp_path, 500)
    # A bad sector in an index: the integrity check fails, the table's rows are still readable.
    page = _pages_of(path, "idx_outbox_priority_id")[0]
    page_size = 4096
    with path.open("r+b") as file:
        file.seek((page - 1) * page_size + 8)
        file.write(b"\xff" * 64)
    database = Database(path)
    assert database.quarantined is not None
    outbox = Outbox(database, TOPICS, boot_id="b2")
    assert outbox.salvaged == 500
    assert [p["event_id"] for p in outbox.peek_payloads()] == [f"v{i}" for i in range(500)]


def test_a_readable_file_is_kept(tmp_path: Path) -> None:
    path = _queued(tmp_path, 3)
    database = Database(path)
    assert database.quarantined is None
    assert database.alarms == {}
    assert Outbox(database, TOPICS).depth() == 3


def test_a_transaction_that_does_not_commit_leaves_no_false_numbers_or_bytes(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db")
    outbox = Outbox(database, TOPICS, boot_id="b1")
    outbox.add([_footfall(1)], now=0)
    before = (outbox.bytes, outbox.enqueued)

    def fails_after_adding(conn: sqlite3.Connection) -> None:
        outbox.add([_footfall(2), _footfall(3)], now=1)
        raise RuntimeError("the disk filled before COMMIT")

    with pytest.raises(RuntimeError):
        database.write(fails_after_adding)
    assert (outbox.bytes, outbox.enqueued) == before
    outbox.add([_footfall(4)], now=2)
    # HQ sees seq 1 then 2: no gap where nothing was lost.
    assert [p["seq"] for p in outbox.peek_payloads()] == [1, 2]


def test_the_reserve_is_built_private_and_the_wal_kept_within_it(tmp_path: Path) -> None:
    database = Database(tmp_path / "a.db", reserve_bytes=1 << 20)
    assert database.reserve_path.stat().st_size == 1 << 20
    assert stat.S_IMODE(database.reserve_path.stat().st_mode) == 0o600
    conn = database.db.conn
    # The WAL is checkpointed before it outgrows what giving up the reserve can absorb.
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] * 4096 <= (1 << 20) // 2
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental: space can go back


def _slow_check(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """The integrity check waits for the returned event: a file too large to check in time."""
    release = threading.Event()
    real = database_module._full_quick_check

    def slow(conn: sqlite3.Connection) -> str:
        release.wait(30)
        return real(conn)

    monkeypatch.setattr(database_module, "_full_quick_check", slow)
    return release


def test_a_file_too_large_to_check_at_start_opens_at_once_and_is_checked_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The start waits START_CHECK_S for the check, then goes on; the check, still running,
    finds the bad index page and says so, without moving the file in use."""
    path = _queued(tmp_path, 3000)
    page = _pages_of(path, "idx_outbox_priority_id")[-1]
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096 + 8)
        file.write(b"\xff" * 64)
    release = _slow_check(monkeypatch)
    database = Database(path)
    assert database.quarantined is None
    assert database.integrity == "pending"
    assert Outbox(database, TOPICS).depth() == 3000  # usable before the check ends
    with caplog.at_level(logging.ERROR):
        release.set()
        found = database.wait_integrity(30)
    assert found not in ("ok", "pending")
    assert "database integrity check found" in database.alarms["integrity"]
    assert "database integrity check found" in caplog.text
    database.close()


def test_the_background_check_of_a_sound_file_clears_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _queued(tmp_path, 3000)
    release = _slow_check(monkeypatch)
    database = Database(path)
    assert database.integrity == "pending"
    release.set()
    assert database.wait_integrity(30) == "ok"
    assert "integrity" not in database.alarms
    assert database.check_integrity() == "ok"  # on demand, the same answer
    database.close()


def test_freed_pages_go_back_to_the_filesystem_a_bounded_round_at_a_time(tmp_path: Path) -> None:
    """After an outage's backlog is sent, the file shrinks back over housekeeping rounds, each
    moving at most VACUUM_PAGES_PER_ROUND pages, and keeps FREE_PAGES_KEPT for reuse."""
    from edge_agent.storage.database import FREE_PAGES_KEPT, VACUUM_PAGES_PER_ROUND

    database = Database(tmp_path / "agent.db")
    outbox = Outbox(database, TOPICS, boot_id="b1")
    for start in range(0, 40_000, 5_000):
        outbox.add([_footfall(i) for i in range(start, start + 5_000)], now=0)
    with database.transaction() as conn:
        conn.execute("DELETE FROM outbox")
    database.checkpoint()
    free = database.db.conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert free > FREE_PAGES_KEPT + VACUUM_PAGES_PER_ROUND
    size = (tmp_path / "agent.db").stat().st_size
    assert database.give_back_free_pages() == VACUUM_PAGES_PER_ROUND
    while database.give_back_free_pages():
        pass
    database.checkpoint()
    assert database.db.conn.execute("PRAGMA freelist_count").fetchone()[0] == FREE_PAGES_KEPT
    assert (tmp_path / "agent.db").stat().st_size < size - (free - FREE_PAGES_KEPT - 1) * 4096
    database.close()


def test_customer_pages_read_every_stored_customer_once_across_gaps(tmp_path: Path) -> None:
    from edge_agent.storage.state import StateStore

    database = Database(tmp_path / "agent.db")
    state = StateStore(database)
    with database.transaction() as conn:
        conn.executemany(
            "INSERT INTO customers VALUES (?,?,?,?)", [(f"c{n}", bytes([n]) * 16, n % 2, 0) for n in range(9)]
        )
        conn.execute("DELETE FROM customers WHERE customer_id IN ('c2', 'c3', 'c4')")  # a gap of rowids
        # A replaced row moves to the end of the table.
        conn.execute("INSERT OR REPLACE INTO customers VALUES ('c0', ?, 1, 1)", (b"\xff" * 16,))
    rows = [row for page in state.customer_pages(batch=2) for row in page.rows()]
    assert sorted(rows) == sorted(
        [
            ("c0", b"\xff" * 16, True, True),
            *((f"c{n}", bytes([n]) * 16, n % 2 == 1, False) for n in (1, 5, 6, 7, 8)),
        ]
    )
    assert {c.customer_id for c in state.customers()} == {r[0] for r in rows}
    database.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=12), unique=True, max_size=40),
    deleted=st.sets(st.integers(0, 39)),
    batch=st.integers(1, 16),
)
@example(ids=["a\x1fb", "c", "d\x00e", "f"], deleted={1}, batch=2)  # the separator, a NUL, a gap
def test_the_registry_read_in_pages_is_the_customers_table_row_for_row(
    tmp_path: Path, ids: list[str], deleted: set[int], batch: int
) -> None:
    """A start reads the customers in pages SQLite joins (``customer_pages``): whatever the ids
    hold (the separator itself, NUL, any script), with rowid gaps left by deletes, every stored
    customer comes back once with their own key and consents, as the rows say."""
    from edge_agent.storage.state import StateStore

    path = tmp_path / f"pages-{len(ids)}-{batch}.db"
    path.unlink(missing_ok=True)
    database = Database(path)
    state = StateStore(database)
    rows = [(c, bytes([n, 0, 31]) + b"key-0123456789"[:13], n % 2, n % 3 == 0) for n, c in enumerate(ids)]
    with database.transaction() as conn:
        conn.executemany("INSERT INTO customers VALUES (?,?,?,?)", rows)
        gone = [(ids[n],) for n in deleted if n < len(ids)]
        conn.executemany("DELETE FROM customers WHERE customer_id = ?", gone)
    kept = {c: (key, bool(s), bool(m)) for n, (c, key, s, m) in enumerate(rows) if n not in deleted}
    read = {}
    for page in state.customer_pages(batch):
        for customer_id, key, service, marketing in page.rows():
            assert customer_id not in read
            read[customer_id] = (key, service, marketing)
    assert read == kept
    database.close()


def test_the_daemon_reads_while_the_check_runs_and_a_bad_file_is_still_moved_aside_before_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's start does not wait for the check before reading its registry; a file the
    check finds bad within START_CHECK_S is moved aside and a new one started all the same, its
    unsent messages salvaged, before anything loaded from the bad one is used. A file too large
    to check in that time is used, the check going on in the background as before."""
    from edge_agent.core.clock import Clock
    from edge_agent.daemon.assembly import assemble
    from tests.conftest import make_config

    config = make_config(tmp_path)
    path = _queued(config.storage.path.parent, 500)
    assert path == config.storage.path
    page = _pages_of(path, "idx_outbox_priority_id")[0]
    with path.open("r+b") as file:
        file.seek((page - 1) * 4096 + 8)
        file.write(b"\xff" * 64)
    agent = assemble(config, Clock(wall=lambda: 1.0, monotonic=lambda: 1.0), None, tables_in_slices=True)
    try:
        assert agent.database.quarantined is not None
        assert "database unreadable at start" in agent.database.alarms["database"]
        assert agent.pipeline.outbox.salvaged == 500
        assert agent.database.integrity == "ok"
    finally:
        agent.database.close()
    release = _slow_check(monkeypatch)
    agent = assemble(config, Clock(wall=lambda: 1.0, monotonic=lambda: 1.0), None, tables_in_slices=True)
    try:
        assert agent.database.quarantined is None
        assert agent.database.integrity == "pending"
        release.set()
        assert agent.database.wait_integrity(30) == "ok"
    finally:
        agent.database.close()

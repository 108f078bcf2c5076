"""HQ's store interface without a broker: ``--db`` parsing, a URL's password kept out of logs,
and a SQLite file written by the first consumer (no schema_version, no gaps table) migrated in
place with its gaps counted from the events it already holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.events import VisitMessage, utc
from edge_agent.hq.report import report
from edge_agent.hq.store import describe, is_url, parse_target
from edge_agent.hq.store_sqlite import SCHEMA_VERSION, SqliteStore

T0 = 1_764_000_000.0


def test_db_is_a_url_for_postgresql_and_a_path_otherwise() -> None:
    assert parse_target("postgresql://hq@db.hq/hq") == "postgresql://hq@db.hq/hq"
    assert parse_target("postgres://hq@db.hq/hq") == "postgres://hq@db.hq/hq"
    assert parse_target("hq.db") == Path("hq.db")
    assert parse_target("/var/lib/hq/postgresql.db") == Path("/var/lib/hq/postgresql.db")
    assert is_url("postgresql://x/y")
    assert not is_url(Path("postgresql:/x"))


@given(
    user=st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    password=st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True),
)
def test_a_url_is_described_without_its_password(user: str, password: str) -> None:
    described = describe(f"postgresql://{user}:{password}@db.hq:5433/hq?sslmode=require")
    assert described == f"postgresql://{user}:***@db.hq:5433/hq?sslmode=require"
    assert describe("postgresql://hq@db.hq/hq") == "postgresql://hq@db.hq/hq"
    assert describe(f"postgres://{user}:{password}@[::1]:5432/hq") == f"postgres://{user}:***@[::1]:5432/hq"
    assert describe(Path("/var/lib/hq.db")) == "/var/lib/hq.db"


def _visit(n: int, boot: str = "b") -> VisitMessage:
    return VisitMessage(
        event_id=f"01V{boot}{n:020d}", store_id="s1", ts=utc(T0 + n), boot_id=boot, seq=n, visit_id=f"v{n}",
        customer_id="c", phase="ended", started_at=utc(T0), ended_at=utc(T0 + n), duration_s=1.0,
        entry_receiver="entrance",
    )  # fmt: skip


def test_a_file_from_the_first_consumer_is_migrated_with_its_gaps_counted(tmp_path: Path) -> None:
    path = tmp_path / "hq.db"
    with sqlite3.connect(path) as conn:  # the tables as the first consumer made them
        conn.execute(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, store_id TEXT, boot_id TEXT, stream TEXT, "
            "seq INTEGER, schema TEXT, ts TEXT, payload TEXT, received FLOAT, consumer TEXT)"
        )
        conn.execute("CREATE TABLE rejected (topic TEXT, reason TEXT, payload_bytes INTEGER, received FLOAT)")
        conn.execute(
            "CREATE TABLE store_status (store_id TEXT PRIMARY KEY, ts TEXT, state TEXT, payload TEXT)"
        )
        conn.executemany(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(m.event_id, m.store_id, m.boot_id, m.stream, m.seq, m.schema_name, m.ts.isoformat(),
              m.to_json().decode(), T0, "hq-old") for m in (_visit(1), _visit(2), _visit(5))],
        )  # fmt: skip
    conn.close()

    gap = {"boot_id": "b", "stream": "events/visit", "missing": 2, "highest_seq": 5}
    assert report(path)["s1"]["gaps"] == [gap]
    store = SqliteStore(path)
    try:
        assert store.connection.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert store.gaps()[0].missing == 2
    finally:
        store.close()
    assert report(path)["s1"]["visits"] == 3  # migrated once: opening again changes nothing
    assert report(path)["s1"]["gaps"] == [gap]


def test_the_store_side_and_the_sqlite_consumer_never_import_psycopg(tmp_path: Path) -> None:
    """psycopg is HQ's extra: a store's install has no such package and must not need it."""
    import subprocess
    import sys

    code = (
        "import sys, edge_agent.cli, edge_agent.daemon.service\n"
        "import edge_agent.hq.consumer, edge_agent.hq.report\n"
        "from edge_agent.hq.store import open_store\n"
        f"open_store({str(tmp_path / 'hq.db')!r}).close()\n"
        "assert 'psycopg' not in sys.modules, sorted(m for m in sys.modules if 'psycopg' in m)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

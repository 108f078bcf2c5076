"""HQ on PostgreSQL against a real server and a real mosquitto: a consumer group stores every
event once, a consumer killed mid-batch loses nothing, bad messages are kept aside without
blocking the feed, gaps are a table and a report line, and the report equals SQLite's."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from edge_agent.cli import main
from edge_agent.core.events import (
    FootfallMessage,
    Message,
    NotificationMessage,
    OrderMessage,
    PurchaseMessage,
    StatusMessage,
    SuppressedMessage,
    VisitMessage,
    utc,
)
from edge_agent.hq.consumer import HqConsumer, Incoming, classify
from edge_agent.hq.report import report
from edge_agent.hq.store import StoreUnavailable, open_store
from edge_agent.hq.store_postgres import PostgresStore
from tests.conftest import Mosquitto, Postgres, Subscriber, free_port, started_consumers, wait_for

pytestmark = pytest.mark.mqtt

T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


def _visit(store: str, n: int, boot: str = "boot-a", spacing_s: float = 1.0) -> VisitMessage:
    return VisitMessage(
        event_id=f"01V{store}{boot}{n:020d}", store_id=store, ts=utc(T0 + n * spacing_s), boot_id=boot, seq=n,
        visit_id=f"v{n}", customer_id=f"c{n}", phase="ended", started_at=utc(T0), ended_at=utc(T0 + n),
        duration_s=float(n) / 3, entry_receiver="entrance",
        path=[{"zone": f"z{n % 3}", "entered_at": utc(T0), "exited_at": utc(T0 + n), "dwell_s": n / 7}],
    )  # fmt: skip


def _topic(message: Message) -> str:
    return f"retail/v1/stores/{message.store_id}/{message.stream}"


@pytest.fixture
def hq_url(postgres: Postgres, request: pytest.FixtureRequest) -> str:
    """A fresh database for one test, on the session's server."""
    return postgres.create_database(f"t{abs(hash(request.node.nodeid)):x}{time.monotonic_ns():x}")


@pytest.fixture
def consumers(mosquitto: Mosquitto, hq_url: str) -> Iterator[Callable[..., HqConsumer]]:
    with started_consumers(mosquitto, hq_url) as make:
        yield make


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]  # tests' own constant queries


def _count(url: str) -> int:
    return int(_query(url, "SELECT count(*) FROM events")[0][0])


def test_three_consumers_in_one_group_store_every_event_of_two_stores_and_resends_exactly_once(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    hq_url: str,
) -> None:  # fmt: skip
    group = [consumers(f"hq-{i}") for i in range(3)]
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    # Five minutes apart: 300 visits span two days, so two partitions fill at once.
    messages = [_visit(store_id, n, spacing_s=300) for store_id in ("s1", "s2") for n in range(1, 301)]
    for message in messages:
        store.publish(_topic(message), message.to_json())
    for message in messages[:50]:  # a store resending after a lost PUBACK
        store.publish(_topic(message), message.to_json())

    wait_for(lambda: sum(c.stats.received for c in group) == 650, 30, "all 650 deliveries")
    stored = [row[0] for row in _query(hq_url, "SELECT event_id FROM events")]
    assert sorted(stored) == sorted(m.event_id for m in messages)  # every event, exactly once
    assert _query(hq_url, "SELECT count(*) FROM event_ids") == [(600,)]
    assert all(c.stats.stored > 0 for c in group), [c.stats.stored for c in group]  # the feed was split
    assert sum(c.stats.stored for c in group) == 600
    assert sum(c.stats.duplicates for c in group) == 50
    partitions = _query(hq_url, "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1")
    assert partitions == [("events_p20251124", 190), ("events_p20251125", 410)]
    figures = report(hq_url)
    assert figures["s1"]["visits"] == figures["s2"]["visits"] == 300
    assert figures["s1"]["gaps"] == figures["s2"]["gaps"] == []


class _Consume:
    """``edge-agent hq consume`` in its own process, its log lines collected."""

    def __init__(self, mosquitto: Mosquitto, url: str, client_id: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "hq", "consume", "--broker", mosquitto.address,
             "--group", "reporting", "--db", url, "--client-id", client_id],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_for(lambda: any("subscribed (shared group" in line for line in self.lines), 20, "hq subscribed")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def end(self, how: signal.Signals) -> None:
        if self.process.poll() is None:
            self.process.send_signal(how)
        self.process.wait(20)
        self._reader.join(5)


def test_a_consumer_killed_with_sigkill_mid_batch_loses_nothing(
    mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber], hq_url: str
) -> None:
    consumer = _Consume(mosquitto, hq_url, "hq-killed")
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    messages = [_visit("s1", n) for n in range(1, 4001)]
    sender = threading.Thread(target=lambda: [store.publish(_topic(m), m.to_json()) for m in messages])
    sender.start()
    try:
        wait_for(lambda: _count(hq_url) >= 300, 30, "the consumer storing")
        consumer.end(signal.SIGKILL)  # between batches or inside one: no goodbye either way
        at_kill = _count(hq_url)
        assert at_kill < len(messages), "the feed had ended before the kill"
        consumer = _Consume(mosquitto, hq_url, "hq-killed")  # its session: what it never acked
        sender.join(60)
        wait_for(lambda: _count(hq_url) >= len(messages), 60, "every event after the restart")
    finally:
        consumer.end(signal.SIGTERM)
        sender.join(60)
    assert _query(hq_url, "SELECT count(*), count(DISTINCT event_id) FROM events") == [(4000, 4000)]
    assert _query(hq_url, "SELECT count(*) FROM event_ids") == [(4000,)]
    assert report(hq_url)["s1"]["gaps"] == []
    assert not any("Traceback" in line for line in consumer.lines)


def test_a_message_that_fails_validation_is_counted_and_kept_in_rejects_never_blocking_the_stream(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    hq_url: str,
) -> None:  # fmt: skip
    consumer = consumers("hq-solo")
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    visit = "retail/v1/stores/s9/events/visit"
    odd = json.loads(_visit("s9", 3).to_json())
    odd["store_id"] = "s9\x00"  # valid JSON and a valid message; PostgreSQL text holds no NUL
    feed: list[tuple[str, bytes]] = [
        (_topic(_visit("s9", 1)), _visit("s9", 1).to_json()),
        (visit, b"{not json"),
        (visit, json.dumps({"schema": "visit.v1", "event_id": "x"}).encode()),
        (_topic(_visit("s9", 2)), _visit("s9", 2).to_json()),
        ("retail/v1/stores/s9/events/odd", json.dumps({"schema": "weather.v1"}).encode()),
        (visit, '{"schema": "visit.v1"}'.encode("utf-16")),
        (visit, json.dumps(odd).encode()),
        (_topic(_visit("s9", 4)), _visit("s9", 4).to_json()),
    ]
    for topic, payload in feed:
        store.publish(topic, payload)

    wait_for(lambda: consumer.stats.received == len(feed), 15, "every delivery")
    assert consumer.stats.rejected == 4
    rejects = _query(hq_url, "SELECT topic, reason, payload_bytes FROM rejected ORDER BY id")
    assert [(topic, size) for topic, _, size in rejects] == [
        (visit, 9), (visit, len(feed[2][1])), ("retail/v1/stores/s9/events/odd", 24), (visit, len(feed[5][1]))
    ]  # fmt: skip
    reasons = [reason for _, reason, _ in rejects]
    assert reasons[0].startswith("not JSON")
    assert reasons[1].startswith("store_id: Field required")
    assert reasons[2] == "unknown schema 'weather.v1'"
    assert reasons[3].startswith("not JSON: 'utf-8' codec can't decode")
    stored = _query(hq_url, "SELECT store_id, seq FROM events ORDER BY arrival")
    assert stored == [("s9", 1), ("s9", 2), ("s9\\u0000", 3), ("s9", 4)]  # the stream went on


def test_a_gap_in_seq_shows_in_the_gap_table_and_in_hq_report(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    hq_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    consumer = consumers("hq-gaps")
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    for n in (1, 2, 4, 7):  # seq 3, 5 and 6 of this boot never arrive
        store.publish(_topic(_visit("s9", n)), _visit("s9", n).to_json())
    store.publish(_topic(_visit("s9", 1, boot="boot-b")), _visit("s9", 1, boot="boot-b").to_json())
    wait_for(lambda: consumer.stats.received == 5, 15, "five deliveries")

    table = "SELECT store_id, boot_id, stream, received, highest_seq, missing FROM gaps ORDER BY boot_id"
    assert _query(hq_url, table) == [
        ("s9", "boot-a", "events/visit", 4, 7, 3), ("s9", "boot-b", "events/visit", 1, 1, 0)
    ]  # fmt: skip
    gap = {"boot_id": "boot-a", "stream": "events/visit", "missing": 3, "highest_seq": 7}
    assert report(hq_url)["s9"]["gaps"] == [gap]
    assert main(["hq", "report", "--db", hq_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["s9"]["gaps"] == [gap]
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["hq", "report", "--db", hq_url]) == 0
    text = capsys.readouterr().out
    assert "3 missing" in text
    assert "events/visit: 3 (boot boot-a, seq 1-7)" in text

    store.publish(_topic(_visit("s9", 5)), _visit("s9", 5).to_json())  # one of them comes late
    wait_for(lambda: consumer.stats.received == 6, 15, "the late one")
    assert report(hq_url)["s9"]["gaps"] == [{**gap, "missing": 2}]


def _rich_feed() -> tuple[list[Message], list[StatusMessage]]:
    """Every kind of figure the report computes, for two stores, with a gap and resends."""
    feed: list[Message] = []
    for store in ("s1", "s2"):
        base: dict[str, Any] = {"store_id": store, "ts": utc(T0), "boot_id": "b", "customer_id": "c1"}
        feed += [_visit(store, n, boot="b") for n in (1, 2, 3, 5, 8)]
        feed += [
            FootfallMessage(event_id=f"01F{store}", store_id=store, ts=utc(T0), boot_id="b", seq=1,
                            interval_start=utc(T0 - 900), interval_end=utc(T0), entries=12, exits=10,
                            occupancy=4, customers_recognised=1),
            OrderMessage(event_id=f"01O{store}", seq=1, order_id="O-1", visit_id="v1", phase="collected",
                         arrival_to_collection_s=241.3, **base),
            SuppressedMessage(event_id=f"01S{store}", seq=1, visit_id="v1", template="shelf.location",
                              audience="customer", reason="quiet hours", **base),
            PurchaseMessage(event_id=f"01P{store}", seq=1, receipt_id="R-1", visit_id="v1", total=9.0,
                            items=2, **base),
            NotificationMessage(event_id=f"01N{store}", seq=1, visit_id="v2", audience="customer",
                                template="cnc.arrival.customer", language="en", channel="push",
                                text="Your order is ready.", expires=utc(T0 + 600), **base),
        ]  # fmt: skip
    statuses = [
        StatusMessage(
            event_id="01ST", store_id="s1", ts=utc(T0), state="online", agent_version="0", boot_id="b"
        )
    ]
    return feed, statuses


def test_the_report_from_postgresql_equals_the_sqlite_report_for_the_same_feed(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    hq_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    on_sqlite = consumers("hq-sqlite", group="on-sqlite", db=tmp_path / "hq.db")
    on_postgres = consumers("hq-postgres", group="on-postgres")
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    feed, statuses = _rich_feed()
    for message in [*feed, *feed[:4]]:
        store.publish(_topic(message), message.to_json())
    store.publish("retail/v1/stores/s1/events/visit", b"{not json")
    for status in statuses:
        store.client.publish(_topic(status), status.to_json(), qos=1).wait_for_publish(10)
    for consumer in (on_sqlite, on_postgres):
        wait_for(lambda c=consumer: c.stats.received == len(feed) + 4 + 1 + len(statuses), 15, "the feed")

    from_sqlite, from_postgres = report(tmp_path / "hq.db"), report(hq_url)
    assert from_postgres == from_sqlite
    assert from_sqlite["s1"]["gaps"] == [
        {"boot_id": "b", "stream": "events/visit", "missing": 3, "highest_seq": 8}
    ]
    assert from_sqlite["s1"]["status"] == "online"
    assert main(["hq", "report", "--db", str(tmp_path / "hq.db"), "--json"]) == 0
    sqlite_json = capsys.readouterr().out
    assert main(["hq", "report", "--db", hq_url, "--json"]) == 0
    assert capsys.readouterr().out == sqlite_json


def test_instances_racing_for_the_same_days_make_each_partition_once_and_store_each_event_once(
    hq_url: str,
) -> None:
    instances = [PostgresStore(hq_url) for _ in range(6)]
    days = [date(2026, 1, d) for d in (1, 2, 3)]
    start = threading.Barrier(len(instances))
    failures: list[BaseException] = []
    stored: list[int] = []
    messages = [_visit("s1", n, spacing_s=86_400 / 4) for n in range(1, 41)]  # four a day
    items = [Incoming(_topic(m), m.to_json(), n, 1, T0) for n, m in enumerate(messages)]

    def race(store: PostgresStore) -> None:
        try:
            start.wait(10)
            store.ensure_partitions(days)
            stored.append(store.write(classify(items, "racer")))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=race, args=(store,)) for store in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for store in instances:
        store.close()
    assert failures == []
    assert sum(stored) == 40
    assert _count(hq_url) == 40
    partitions = _query(hq_url, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'events'::regclass")
    assert partitions == [(14,)]  # Jan 1-3, and the eleven days the visits span


def test_the_schema_is_versioned_and_opening_it_again_changes_nothing(hq_url: str) -> None:
    open_store(hq_url).close()
    open_store(hq_url).close()
    assert _query(hq_url, "SELECT version FROM schema_version") == [(1,)]
    with psycopg.connect(hq_url) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(RuntimeError, match="version 99, newer"):
        open_store(hq_url)


def test_an_unreachable_server_is_said_in_a_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"postgresql://hq:secret@127.0.0.1:{free_port()}/hq"
    with pytest.raises(StoreUnavailable):
        open_store(url)
    assert main(["hq", "report", "--db", url]) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"cannot open HQ's database postgresql://hq:***@127.0.0.1:{url.split(':')[3]}")
    assert "secret" not in error


def test_a_database_outage_is_waited_out_with_the_batch_unacknowledged_and_nothing_lost(
    mosquitto: Mosquitto, subscriber_factory: Callable[..., Subscriber], caplog: pytest.LogCaptureFixture
) -> None:
    server = Postgres(durable_commits=True).start()  # its own: this test crashes it
    try:
        url = server.create_database("outage")
        consumer = HqConsumer(mosquitto.host, mosquitto.port, "reporting", url, client_id="hq-outage").start()
        try:
            wait_for(consumer.subscribed.is_set, 10, "subscribed")
            store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
            first = [_visit("s1", n) for n in range(1, 11)]
            for message in first:
                store.publish(_topic(message), message.to_json())
            wait_for(lambda: consumer.stats.stored == 10, 10, "the first ten")
            server.halt()
            rest = [_visit("s1", n) for n in range(11, 31)]
            for message in rest:
                store.publish(_topic(message), message.to_json())
            wait_for(lambda: "database unavailable" in caplog.text, 10, "the consumer waiting")
            assert consumer.stats.stored == 10
            server.resume()
            wait_for(lambda: consumer.stats.stored == 30, 30, "the rest, once the server is back")
        finally:
            consumer.stop()
        assert _count(url) == 30
        assert report(url)["s1"]["gaps"] == []
    finally:
        server.stop()


def test_simulate_fleet_into_postgresql_delivers_every_event(mosquitto: Mosquitto, hq_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "simulate-fleet", "--stores", "3", "--broker", mosquitto.address,
         "--rate", "20", "--seconds", "1", "--consumers", "2", "--db", hq_url],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "3 stores, 2 HQ consumers: 60/60 events" in result.stdout
    assert _count(hq_url) == 60

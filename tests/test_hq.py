"""The HQ reference consumer against a real mosquitto: a consumer group splits the feed and the
database holds every event exactly once; bad payloads are recorded, gaps are reported."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from edge_agent.core.events import FootfallMessage, Message, StatusMessage, VisitMessage, utc
from edge_agent.hq.consumer import HqConsumer
from edge_agent.hq.report import report
from tests.conftest import Mosquitto, Subscriber, started_consumers, wait_for

T0 = 1_764_000_000.0


def _visit(store: str, n: int, boot: str = "boot-a") -> VisitMessage:
    return VisitMessage(
        event_id=f"01V{store}{n:020d}", store_id=store, ts=utc(T0 + n), boot_id=boot, seq=n,
        visit_id=f"v{n}", customer_id=f"c{n}", phase="ended", started_at=utc(T0), ended_at=utc(T0 + n),
        duration_s=float(n), entry_receiver="entrance",
    )  # fmt: skip


def _topic(message: Message) -> str:
    return f"retail/v1/stores/{message.store_id}/{message.stream}"


@pytest.fixture
def consumers(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Callable[..., HqConsumer]]:
    with started_consumers(mosquitto, tmp_path / "hq.db") as make:
        yield make


def _stored_ids(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM events")]


def test_three_consumers_in_one_group_split_the_feed_and_store_every_event_once(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:  # fmt: skip
    group = [consumers(f"hq-{i}") for i in range(3)]
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    messages = [_visit(store_id, n) for store_id in ("s1", "s2") for n in range(1, 301)]
    for message in messages:
        store.publish(_topic(message), message.to_json())
    for message in messages[:50]:  # a store resending after a lost PUBACK
        store.publish(_topic(message), message.to_json())

    db = tmp_path / "hq.db"
    wait_for(lambda: sum(c.stats.received for c in group) == 650, 30, "all 650 deliveries")
    stored = _stored_ids(db)
    assert sorted(stored) == sorted(m.event_id for m in messages)  # every event, exactly once
    assert all(c.stats.stored > 0 for c in group), [c.stats.stored for c in group]  # the feed was split
    assert sum(c.stats.stored for c in group) == 600
    assert sum(c.stats.duplicates for c in group) == 50
    figures = report(db)
    assert figures["s1"]["visits"] == 300
    assert figures["s1"]["gaps"] == []


def test_bad_payloads_are_recorded_gaps_reported_and_status_kept(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    consumer = consumers("hq-solo")
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    for n in (1, 2, 4):  # seq 3 of this boot never arrives
        store.publish(_topic(_visit("s9", n)), _visit("s9", n).to_json())
    footfall = FootfallMessage(
        event_id="01F0000000000000000000001", store_id="s9", ts=utc(T0), boot_id="boot-a", seq=1,
        interval_start=utc(T0 - 900), interval_end=utc(T0), entries=12, exits=10, occupancy=4,
        customers_recognised=1,
    )  # fmt: skip
    store.publish(_topic(footfall), footfall.to_json())
    store.publish("retail/v1/stores/s9/events/visit", b"{not json")
    store.publish(
        "retail/v1/stores/s9/events/visit", json.dumps({"schema": "visit.v1", "event_id": "x"}).encode()
    )
    store.publish("retail/v1/stores/s9/events/odd", json.dumps({"schema": "weather.v1"}).encode())
    status = StatusMessage(
        event_id="01S", store_id="s9", ts=utc(T0), state="online", agent_version="0", boot_id="b"
    )
    store.client.publish("retail/v1/stores/s9/status", status.to_json(), qos=1, retain=True).wait_for_publish(
        10
    )

    wait_for(lambda: consumer.stats.received == 8, 15, "eight deliveries")
    assert consumer.stats.rejected == 3
    with sqlite3.connect(tmp_path / "hq.db") as conn:
        reasons = [row[0] for row in conn.execute("SELECT reason FROM rejected ORDER BY rowid")]
    assert reasons[0].startswith("not JSON")
    assert reasons[1].startswith("store_id: Field required")
    assert reasons[2] == "unknown schema 'weather.v1'"
    figures = report(tmp_path / "hq.db")["s9"]
    assert figures["gaps"] == [
        {"boot_id": "boot-a", "stream": "events/visit", "missing": 1, "highest_seq": 4}
    ]
    assert figures["footfall_entries"] == 12
    assert figures["status"] == "online"

    assert main(["hq", "report", "--db", str(tmp_path / "hq.db"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["s9"]["visits"] == 3


def test_simulate_fleet_delivers_every_event_of_every_store(mosquitto: Mosquitto) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent", "simulate-fleet", "--stores", "4", "--broker", mosquitto.address,
         "--rate", "20", "--seconds", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "4 stores, 2 HQ consumers: 80/80 events" in result.stdout


def test_report_has_click_and_collect_waits_suppressions_and_conversion(
    consumers: Callable[..., HqConsumer], subscriber_factory: Callable[..., Subscriber], mosquitto: Mosquitto,
    tmp_path: Path,
) -> None:  # fmt: skip
    from edge_agent.core.events import OrderMessage, PurchaseMessage, SuppressedMessage

    consumer = consumers("hq-report")
    store = subscriber_factory(mosquitto, "nothing/#", client_id="store-publisher")
    base = {"store_id": "s7", "ts": utc(T0), "boot_id": "b", "customer_id": "c1"}
    feed: list[Message] = [
        _visit("s7", 1),
        OrderMessage(event_id="01O1", seq=1, order_id="O-1", visit_id="v1", phase="collected",
                     arrival_to_collection_s=240.0, **base),
        SuppressedMessage(event_id="01S1", seq=1, visit_id="v1", template="shelf.location",
                          audience="customer", reason="quiet hours", **base),
        PurchaseMessage(event_id="01P1", seq=1, receipt_id="R-1", visit_id="v1", total=9.0, items=2, **base),
    ]  # fmt: skip
    for message in feed:
        store.publish(_topic(message), message.to_json())
    wait_for(lambda: consumer.stats.received == 4, 10, "four deliveries")
    figures = report(tmp_path / "hq.db")["s7"]
    assert figures["collections"] == 1
    assert figures["arrival_to_collection_median_s"] == 240.0
    assert figures["notifications_suppressed"] == {"quiet hours": 1}
    assert figures["conversion"] == 1.0


def _blocks(text: str) -> dict[str, dict[str, list[str]]]:
    """The report's text as {store: {figure: its lines}}, read back from the boxes."""
    blocks: dict[str, dict[str, list[str]]] = {}
    figure = ""
    for line in text.splitlines():
        if line.startswith("store "):
            store = blocks.setdefault(line.split()[1], {})
        elif line.startswith("│"):
            label, value = (cell.strip() for cell in line.strip("│").split("│"))
            figure = label or figure
            store.setdefault(figure, []).append(value)
    return blocks


def _render(figures: dict[str, dict[str, Any]], title: str = "HQ report from hq.db") -> str:
    from rich.console import Console

    from edge_agent.hq.report import report_blocks

    console = Console(record=True, width=80)
    console.print(report_blocks(figures, title=title))
    return console.export_text()


def test_the_report_has_a_block_per_store_in_order_with_minutes_and_percentages() -> None:
    from edge_agent.hq.report import LABELS

    figures = {
        "s2": {"status": None, "visits": 0, "visit_seconds": 0.0, "zone_dwell_s": {}, "footfall_entries": 0,
               "notifications_sent": {}, "notifications_suppressed": {}, "collections": 0,
               "arrival_to_collection_median_s": None, "conversion": None, "gaps": []},
        "s1": {"status": "online", "visits": 2, "visit_seconds": 1200.0,
               "zone_dwell_s": {"a": 60.0, "b": 600.0, "c": 120.0, "d": 30.0}, "footfall_entries": 9,
               "notifications_sent": {"staff:cnc": 1, "customer:cnc": 2},
               "notifications_suppressed": {"quiet hours": 1}, "collections": 1,
               "arrival_to_collection_median_s": 240.0, "conversion": 0.5,
               "gaps": [{"boot_id": "b1", "stream": "events/visit", "missing": 2, "highest_seq": 9},
                        {"boot_id": "b2", "stream": "events/zone", "missing": 1, "highest_seq": 4}]},
    }  # fmt: skip
    text = _render(figures)
    assert text.startswith("HQ report from hq.db\n")
    blocks = _blocks(text)
    assert list(blocks) == ["s1", "s2"]
    assert list(blocks["s1"]) == list(blocks["s2"]) == list(LABELS)
    assert blocks["s1"] == {
        "status": ["online"], "visits": ["2"], "mean visit": ["10.0 min"],
        "top zones by dwell": ["b 10 min", "c 2 min", "a 1 min"], "footfall": ["9"],
        "notifications": ["customer:cnc 2", "staff:cnc 1"], "suppressed": ["quiet hours 1"],
        "C&C collected (median wait)": ["1 (4.0 min)"], "conversion": ["50%"],
        "gaps": ["3 missing", "events/visit: 2 (boot b1, seq 1-9)", "events/zone: 1 (boot b2, seq 1-4)"],
        "C&C left uncollected": ["0"], "staff alerts": ["-"], "check-ins": ["0"], "redemptions": ["0"],
        "outcomes (worked)": ["-"], "C&C kept waiting": ["0"],
    }  # fmt: skip
    assert blocks["s2"] == {
        "status": ["-"], "visits": ["0"], "mean visit": ["-"], "top zones by dwell": ["-"], "footfall": ["0"],
        "notifications": ["-"], "suppressed": ["-"], "C&C collected (median wait)": ["-"],
        "conversion": ["-"], "gaps": ["none"], "C&C left uncollected": ["0"], "staff alerts": ["-"],
        "check-ins": ["0"], "redemptions": ["0"], "outcomes (worked)": ["-"], "C&C kept waiting": ["0"],
    }  # fmt: skip


def _hq_database(path: Path, messages: Sequence[Message], statuses: Sequence[StatusMessage] = ()) -> Path:
    """An HQ database holding ``messages`` and ``statuses`` as ``hq consume`` stores them."""
    from edge_agent.hq.store import Batch, EventRow, StatusRow
    from edge_agent.hq.store_sqlite import SqliteStore

    store = SqliteStore(path)
    store.write(
        Batch(
            [EventRow(m.event_id, m.store_id, m.boot_id, m.stream, m.seq, m.schema_name, m.ts,
                      m.to_json().decode(), T0, "hq-test") for m in messages],
            statuses=[StatusRow(s.store_id, s.ts, s.state, s.to_json().decode()) for s in statuses],
        )
    )  # fmt: skip
    store.close()
    return path


def test_the_text_report_fits_80_columns_cuts_nothing_and_shows_missing_figures_as_a_dash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.core.events import NotificationMessage, OrderMessage, SuppressedMessage

    base: dict[str, Any] = {"ts": utc(T0), "boot_id": "01KAV9GGERVFYKSFACEH6SK94R", "customer_id": "c1"}
    busy = "store-with-a-rather-long-identifier-0042"
    feed: list[Message] = [
        *(_visit(busy, n) for n in (1, 2, 5)),
        OrderMessage(event_id="01O1", store_id=busy, seq=1, order_id="O-1", visit_id="v1", phase="collected",
                     arrival_to_collection_s=240.0, **base),
        NotificationMessage(event_id="01N1", store_id=busy, seq=1, visit_id="v1", audience="customer",
                            template="cnc.arrival.customer", language="en", channel="push",
                            text="Welcome! Your order O-1 is ready: collect it at Counter B.",
                            expires=utc(T0 + 600), **base),
        SuppressedMessage(event_id="01S1", store_id=busy, seq=1, visit_id="v1", template="shelf.location",
                          audience="customer", reason="no marketing consent given by this customer [yet]",
                          **base),
        _visit("quiet", 1),
    ]  # fmt: skip
    status = StatusMessage(
        event_id="01ST", store_id="idle", ts=utc(T0), state="online", agent_version="0", boot_id="b"
    )
    full = _hq_database(tmp_path / "hq.db", feed, [status])
    empty = _hq_database(tmp_path / "empty.db", [])
    monkeypatch.setenv("COLUMNS", "80")

    assert main(["hq", "report", "--db", str(full)]) == 0
    text = capsys.readouterr().out
    assert max(len(line) for line in text.splitlines()) <= 80, text
    assert "…" not in text
    blocks = _blocks(text)
    assert list(blocks) == ["idle", "quiet", busy]
    assert blocks[busy]["C&C collected (median wait)"] == ["1 (4.0 min)"]
    assert " ".join(blocks[busy]["suppressed"]) == "no marketing consent given by this customer [yet] 1"
    assert blocks[busy]["gaps"][0] == "2 missing"
    assert blocks["quiet"]["C&C collected (median wait)"] == ["-"]
    assert blocks["quiet"]["conversion"] == ["0%"]
    idle = blocks["idle"]
    assert idle["status"] == ["online"]
    for figure in ("mean visit", "top zones by dwell", "notifications", "suppressed",
                   "C&C collected (median wait)", "conversion"):  # fmt: skip
        assert idle[figure] == ["-"], figure
    assert idle["gaps"] == ["none"]

    assert main(["hq", "report", "--db", str(empty)]) == 0
    *title, nothing = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in title) <= 80  # a long path wraps, whole
    assert " ".join(line.strip() for line in title) == f"HQ report from {empty}"
    assert nothing == "no store has reported to this database yet"

    assert main(["hq", "report", "--db", str(full), "--json"]) == 0  # the figures, keys as they were
    figures = json.loads(capsys.readouterr().out)
    assert set(figures[busy]) == {
        "events", "visits", "visit_seconds", "zone_dwell_s", "footfall_entries", "notifications_sent",
        "notifications_suppressed", "collections", "arrival_to_collection_median_s", "visits_with_purchase",
        "conversion", "gaps", "status", "left_uncollected", "staff_alerts", "check_ins", "redemptions",
        "outcomes", "counter_waits",
    }  # fmt: skip
    assert figures["idle"]["collections"] == 0
    assert figures["idle"]["arrival_to_collection_median_s"] is None


def test_the_reports_show_outcome_rates_per_template_check_ins_redemptions_and_staff_alerts(
    tmp_path: Path,
) -> None:
    from datetime import timedelta

    from edge_agent.core.events import CheckInMessage, OutcomeMessage, RedemptionMessage, StaffAlertMessage
    from edge_agent.hq.html_report import render_report
    from edge_agent.hq.journey_figures import journey_figures
    from edge_agent.hq.store import open_store

    def envelope(n: int) -> dict[str, Any]:
        return {"event_id": f"E{n:03d}", "store_id": "s1", "ts": utc(T0 + n)}

    results = [("shelf.location", "entered_zone", True), ("shelf.location", "zone_not_visited", False),
               ("shelf.location", "entered_zone", True), ("cnc.arrival.customer", "reached_counter", True),
               ("loyalty.check_in", "not_measured", None)]  # fmt: skip
    messages: list[Message] = [
        OutcomeMessage(**envelope(i), notification_event_id=f"N{i}", customer_id="c1", visit_id="v1",
                       template=t, result=r, success=ok)  # type: ignore[arg-type]
        for i, (t, r, ok) in enumerate(results)
    ]  # fmt: skip
    messages += [
        CheckInMessage(**envelope(10), customer_id="c1", visit_id="v1", local_date="2025-11-24", reward="x"),
        RedemptionMessage(**envelope(11), receipt_id="R", customer_id="c1", coupon="C",
                          notification_event_id="N9", template="post_purchase.thanks", issued_visit_id="v0",
                          issued_at=utc(T0), visit_id=None),
        StaffAlertMessage(**envelope(12), template="staff.queue", language="en", text="6 people",
                          zone="tills", expires=utc(T0) + timedelta(minutes=5)),
    ]  # fmt: skip
    db = _hq_database(tmp_path / "hq.db", messages)
    figures = report(db)["s1"]
    assert figures["outcomes"] == {"shelf.location": (2, 3), "cnc.arrival.customer": (1, 1)}
    assert (figures["check_ins"], figures["redemptions"], figures["staff_alerts"]) == (
        1,
        1,
        {"staff.queue": 1},
    )
    blocks = _blocks(_render(report(db)))
    assert blocks["s1"]["outcomes (worked)"] == ["cnc.arrival.customer 100% of 1", "shelf.location 67% of 3"]
    store = open_store(db)
    try:
        events = [(store_id, schema, json.loads(body)) for store_id, schema, body in store.events()]
        html = render_report(journey_figures(events), {}, "t", "hq.db")
    finally:
        store.close()
    assert 'data-template="shelf.location" data-worked="2" data-decided="3"' in html
    assert "shelf.location: 67% worked (2 of 3)" in html
    assert "no-outcomes" not in html

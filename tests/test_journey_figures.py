"""The journey report's figures per store and local day, from hand-built stored events."""

from __future__ import annotations

import itertools
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.events import (
    FootfallMessage,
    GapMessage,
    Message,
    NotificationMessage,
    OrderMessage,
    SuppressedMessage,
    VisitMessage,
    ZoneInterval,
)
from edge_agent.hq.html_report import render_report, wait_bins
from edge_agent.hq.journey_figures import StoreLayout, ZoneShape, journey_figures
from edge_agent.tools.storeday import demo_config

STORE = "demo-0001"
# 23:30 UTC is 00:30 the next day in Rome (CET, UTC+1 in November): the local day decides.
LATE = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
NOON = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
ROME = StoreLayout(STORE, "Europe/Rome", (ZoneShape("a", "A", ((0, 0), (1, 0), (1, 1))),), ())
_seq = iter(range(1, 1000))


def _stored(message: Message) -> tuple[str, str, dict[str, Any]]:
    return message.store_id, message.schema_name, message.model_dump(mode="json", by_alias=True)


def _env(ts: datetime, store: str = STORE, seq: int | None = None) -> dict[str, Any]:
    return {"event_id": f"e{next(_seq)}", "store_id": store, "ts": ts, "boot_id": "boot-1", "seq": seq}


def _visit(start: datetime, zones: list[tuple[str, float]], **env: Any) -> VisitMessage:
    legs, at = [], start
    for zone, dwell in zones:
        legs.append(
            ZoneInterval(zone=zone, entered_at=at, exited_at=at + timedelta(seconds=dwell), dwell_s=dwell)
        )
        at += timedelta(seconds=dwell)
    return VisitMessage(
        **_env(at, **env), visit_id=f"v{start.timestamp()}", customer_id="c1", phase="ended",
        started_at=start, ended_at=at, duration_s=(at - start).total_seconds(), entry_receiver="r", path=legs,
    )  # fmt: skip


def _order(order_id: str, phase: str, ts: datetime, wait: float | None = None) -> OrderMessage:
    return OrderMessage(
        **_env(ts), order_id=order_id, customer_id="c1", visit_id="v", phase=phase,  # type: ignore[arg-type]  # a Literal from a test table
        arrival_to_collection_s=wait,
    )  # fmt: skip


def test_a_visit_counts_dwell_and_consecutive_zone_steps_on_its_local_day() -> None:
    events = [
        _stored(
            _visit(NOON, [("entrance", 30), ("toys", 120), ("toys", 10), ("counter", 60), ("entrance", 5)])
        ),
        _stored(_visit(LATE, [("entrance", 20), ("toys", 40)])),
    ]
    store = journey_figures(events, {STORE: ROME})[STORE]
    assert [d.day for d in store.days] == [date(2026, 11, 21), date(2026, 11, 22)]
    first, second = store.days
    assert first.visits == 1
    assert first.visit_seconds == 225
    assert first.zone_dwell_s == {"entrance": 35, "toys": 130, "counter": 60}
    # toys -> toys is no step between zones
    assert first.flows == {("entrance", "toys"): 1, ("toys", "counter"): 1, ("counter", "entrance"): 1}
    assert second.flows == {("entrance", "toys"): 1}
    # Without a layout the day is UTC's: both visits fall on the 21st.
    assert [d.day for d in journey_figures(events)[STORE].days] == [date(2026, 11, 21)]


def test_the_funnel_counts_orders_per_phase_with_their_waits() -> None:
    events = [
        _stored(_order("o1", "arrived", NOON)),
        _stored(_order("o1", "at_counter", NOON + timedelta(minutes=3))),
        _stored(_order("o1", "collected", NOON + timedelta(minutes=9), wait=540.0)),
        _stored(_order("o2", "arrived", NOON)),
        _stored(_order("o2", "at_counter", NOON + timedelta(minutes=1))),
        _stored(_order("o3", "arrived", NOON)),
        # o4 arrived before midnight in Rome and was collected after it: it stays the 21st's order
        _stored(_order("o4", "collected", LATE + timedelta(minutes=50), wait=3600.0)),
        _stored(_order("o4", "arrived", LATE - timedelta(minutes=40))),  # 23:50 in Rome
    ]
    (day,) = journey_figures(events, {STORE: ROME})[STORE].days
    assert day.funnel == {
        "arrived": 4,
        "at_counter": 2,
        "counter_wait": 0,
        "collected": 2,
        "left_uncollected": 0,
    }
    assert day.waits_s == (540.0, 3600.0)


def test_footfall_notifications_suppressions_and_declared_gaps() -> None:
    ff = [
        FootfallMessage(
            **_env(NOON),
            interval_start=NOON + timedelta(minutes=m),
            interval_end=NOON + timedelta(minutes=m + 15),
            entries=e,
            exits=x,
            occupancy=o,
            customers_recognised=0,
        )
        for m, e, x, o in [(15, 4, 1, 5), (0, 3, 1, 2)]
    ]
    note = NotificationMessage(
        **_env(NOON), audience="customer", customer_id="c1", visit_id="v", template="welcome", language="en",
        text="hi", expires=NOON,
    )  # fmt: skip
    held = SuppressedMessage(
        **_env(NOON),
        customer_id="c1",
        visit_id="v",
        template="welcome",
        audience="customer",
        reason="quiet hours",
    )
    gap = GapMessage(
        **_env(NOON), reason="expired", dropped_boot_id="boot-0", dropped_stream="notifications",
        first_seq=3, last_seq=5, count=3,
    )  # fmt: skip
    events = [*map(_stored, [*ff, note, note.model_copy(update={"event_id": "x"}), held, gap])]
    (day,) = journey_figures(events, {STORE: ROME})[STORE].days
    assert [(i.start.hour, i.start.minute, i.occupancy) for i in day.footfall] == [(12, 0, 2), (12, 15, 5)]
    assert (day.footfall_entries, day.footfall_exits, day.peak_occupancy) == (7, 2, 5)
    assert day.notifications == {"customer:welcome": 2}
    assert day.suppressed == {"quiet hours": 1}
    assert day.outcomes == {}  # stores send no outcome.v1 yet
    assert [(g.reason, g.stream, g.count, g.first_seq, g.last_seq) for g in day.declared_gaps] == [
        ("expired", "notifications", 3, 3, 5)
    ]


def test_outcomes_are_counted_when_stores_send_them() -> None:
    outcome = {"ts": NOON.isoformat(), "template": "welcome", "outcome": "opened"}
    (day,) = journey_figures([(STORE, "outcome.v1", outcome)] * 2)[STORE].days
    assert day.outcomes == {"welcome:opened": 2}


def test_missing_seq_numbers_per_boot_and_stream_are_the_stores_gaps() -> None:
    visits = [_visit(NOON, [("a", 1)], seq=seq) for seq in (1, 2, 5)]
    orders = [_order("o1", "arrived", NOON).model_copy(update={"seq": 1, "boot_id": "boot-2"})]
    store = journey_figures(map(_stored, [*visits, *orders]))[STORE]
    assert [(g.boot_id, g.stream, g.missing, g.highest_seq) for g in store.seq_gaps] == [
        ("boot-1", "events/visit", 2, 5)
    ]


def test_a_store_without_a_layout_gets_every_chart_and_a_note_instead_of_the_plan() -> None:
    events = [_stored(_visit(NOON, [("a", 30), ("b", 10)], store="other-7"))]
    layout = StoreLayout.from_config(demo_config())
    page = render_report(
        journey_figures(events, {layout.store_id: layout}), {layout.store_id: layout}, "t", "s"
    )
    assert 'class="note no-layout"' in page
    for chart in (
        "funnel",
        "waits",
        "footfall-chart",
        "notifications",
        "suppressions",
        "outcomes",
        "seq-gaps",
    ):
        assert f'class="chart {chart}"' in page
    assert "<script" not in page
    assert "http" not in page.replace('lang="en"', "")  # nothing to fetch: the page works offline


def test_the_demo_layout_comes_from_the_store_config() -> None:
    layout = StoreLayout.from_config(demo_config())
    assert layout.store_id == STORE
    assert layout.timezone == "Europe/Rome"
    assert layout.has_floor_plan
    assert len(layout.zones) == 9
    assert ("entrance", (7.0, 4.0)) in layout.receivers


@given(st.lists(st.floats(min_value=0, max_value=6 * 3600, allow_nan=False), max_size=60))
def test_wait_bins_hold_every_wait_in_round_bins(waits: list[float]) -> None:
    bins = wait_bins(waits)
    assert sum(n for _, _, n in bins) == len(waits)
    assert len(bins) <= 12 or bins[0][1] == 60
    for (low, high, _), nxt in itertools.pairwise(bins):
        assert high == nxt[0]
        assert high > low


def test_hq_report_html_refuses_a_store_config_it_cannot_read(tmp_path: Path) -> None:
    from edge_agent.hq.consumer import open_hq_database

    open_hq_database(tmp_path / "hq.db").conn.close()
    (tmp_path / "bad.toml").write_text("[store]\nid = 'has/slash'\n", encoding="utf-8")
    out = tmp_path / "report.html"
    args = ["hq", "report", "--db", str(tmp_path / "hq.db"), "--html", str(out)]
    bad = subprocess.run(
        [sys.executable, "-m", "edge_agent", *args, "--store-config", str(tmp_path / "bad.toml")],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--store-config" in bad.stderr
    assert not out.exists()
    empty = subprocess.run(
        [sys.executable, "-m", "edge_agent", *args], check=False, capture_output=True, text=True, timeout=60
    )
    assert empty.returncode == 0, empty.stderr
    assert "No store has reported to this database yet" in out.read_text(encoding="utf-8")


def test_what_stores_send_is_text_in_the_page_never_markup() -> None:
    hostile = '<script>alert("x")</script>'
    note = NotificationMessage(
        **_env(NOON), audience="staff", customer_id="c1", visit_id="v", template=hostile, language="en",
        text="hi", expires=NOON,
    )  # fmt: skip
    visit = _visit(NOON, [(hostile, 10), ("b", 5)])
    page = render_report(journey_figures([_stored(note), _stored(visit)]), {}, "t", "s")
    assert "<script" not in page
    assert "&lt;script&gt;" in page

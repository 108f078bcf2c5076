"""``hq report --html`` in a real headless Chromium: the page renders without a console error,
the floor plan and every chart are there, a screenshot is not blank, and the figures in the page
are ``hq report --json``'s on the same database.

The database is the demo day as HQ stored it, plus what the demo's HQ never sends: collections
with their waits, a gap the store declared, a message HQ never got (a missing ``seq``), and a
second store that HQ has no configuration for.
"""

from __future__ import annotations

import io
import json
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edge_agent.core.events import GapMessage, Message, OrderMessage
from edge_agent.tools.demo import run_demo
from tests.chromium import chromium_missing, open_page, png_pixels

DEMO_TOML = Path(__file__).resolve().parents[1] / "edge_agent" / "data" / "demo.toml"
OTHER = "store-b"
CHARTS = (
    "plan", "flows", "funnel", "waits", "footfall-chart", "notifications", "suppressions", "outcomes",
    "declared-gaps",
)  # fmt: skip
# Everything the page says, read in the browser from its data- attributes and cells.
READ_PAGE = """JSON.stringify([...document.querySelectorAll('section.store')].map(s => ({
  store: s.dataset.store,
  plans: s.querySelectorAll('svg.floor-plan').length,
  receivers: s.querySelectorAll('svg.floor-plan circle.receiver').length,
  seqGaps: [...s.querySelectorAll('tr.seq-gap')].map(e => ({boot_id: e.dataset.bootId,
    stream: e.dataset.stream, missing: +e.dataset.missing, highest_seq: +e.dataset.highestSeq})),
  days: [...s.querySelectorAll('section.day')].map(d => ({
    day: d.dataset.day,
    charts: [...d.querySelectorAll('figure.chart')].map(f => f.classList[1]),
    figures: Object.fromEntries([...d.querySelectorAll('[data-figure]')]
      .map(e => [e.dataset.figure, e.dataset.value])),
    dwell: [...d.querySelectorAll('g.zone, tr.dwell')].map(e => [e.dataset.zone, +e.dataset.dwellS]),
    flows: [...d.querySelectorAll('.flows-table td[data-count]')].map(e => +e.dataset.count),
    funnel: Object.fromEntries([...d.querySelectorAll('.funnel [data-phase]')]
      .map(e => [e.dataset.phase, +e.dataset.count])),
    median: d.querySelector('figure.waits').dataset.medianS,
    bins: [...d.querySelectorAll('figure.waits g.bin')].map(e => +e.dataset.count),
    footfall: [...d.querySelectorAll('svg.footfall g.interval')].map(e => +e.dataset.entries),
    notifications: [...d.querySelectorAll('.notifications [data-template]')]
      .map(e => [e.dataset.template, +e.dataset.count]),
    suppressed: [...d.querySelectorAll('.suppressions [data-reason]')]
      .map(e => [e.dataset.reason, +e.dataset.count]),
  })),
})))"""

pytestmark = pytest.mark.skipif(chromium_missing() is not None, reason=str(chromium_missing()))


@pytest.fixture(scope="module")
def hq_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo day (48 shoppers, 4 h) as HQ stored it, plus the cases the demo never has."""
    folder = tmp_path_factory.mktemp("hq")
    db = folder / "hq.db"
    result = run_demo(
        shoppers=48, hours=4, console=Console(file=io.StringIO()), report_path=folder / "demo.html", hq_db=db
    )
    assert result.published > 0
    assert result.lost == 0
    _add_what_the_demo_never_sends(db)
    return db


def _add_what_the_demo_never_sends(db: Path) -> None:
    conn = sqlite3.connect(db)
    with conn:
        arrivals = [
            OrderMessage.model_validate_json(payload)
            for (payload,) in conn.execute("SELECT payload FROM events WHERE schema = 'order.v1'")
        ]
        collected = {order.order_id for order in arrivals if order.phase == "collected"}
        # The demo hands some orders over itself; HQ marks the others collected here.
        arrivals = [
            order for order in arrivals if order.phase == "arrived" and order.order_id not in collected
        ]
        assert arrivals, "the demo day has click-and-collect arrivals not handed over"
        extra: list[tuple[str, Message]] = []
        for n, order in enumerate(arrivals):  # HQ marks them collected, minutes apart
            wait = 120.0 + 97.0 * n
            extra.append(("events/order", order.model_copy(update={
                "event_id": f"collected-{n}", "phase": "collected", "arrival_to_collection_s": wait,
                "ts": order.ts + timedelta(seconds=wait), "seq": None,
            })))  # fmt: skip
        first = arrivals[0]
        extra.append(("events/gap", GapMessage(
            event_id="gap-1", store_id=first.store_id, ts=first.ts, reason="expired",
            dropped_boot_id=first.boot_id, dropped_stream="notifications", first_seq=3, last_seq=4, count=2,
        )))  # fmt: skip
        for stream, message in extra:
            _insert(conn, stream, message)
        # A message HQ never got: the store's third visit message (and so one fewer received in
        # the gap table the consumer keeps as it stores).
        boot_id = conn.execute("SELECT boot_id FROM events WHERE schema = 'visit.v1' AND seq = 3").fetchone()[
            0
        ]
        conn.execute("DELETE FROM events WHERE schema = 'visit.v1' AND seq = 3")
        conn.execute(
            "UPDATE gaps SET received = received - 1 WHERE boot_id = ? AND stream = 'events/visit'",
            (boot_id,),
        )
        # A second store, for which HQ was given no configuration: some of the first's visits.
        for n, (payload,) in enumerate(
            conn.execute("SELECT payload FROM events WHERE schema='visit.v1'").fetchall()
        ):
            body = json.loads(payload) | {"store_id": OTHER, "event_id": f"b-{n}"}
            conn.execute(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                (body["event_id"], OTHER, body["boot_id"], "events/visit", body["seq"], "visit.v1",
                 body["ts"], json.dumps(body), 0.0, "test"),
            )  # fmt: skip
    conn.close()


def _insert(conn: sqlite3.Connection, stream: str, message: Message) -> None:
    conn.execute(
        "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
        (message.event_id, message.store_id, message.boot_id, stream, message.seq, message.schema_name,
         message.ts.isoformat(), message.model_dump_json(by_alias=True), 0.0, "test"),
    )  # fmt: skip


def _hq_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "hq", "report", *args],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def rendered(
    hq_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[dict[str, Any]], Any, bytes]:
    """(what the page says, the browser's page record, a screenshot) of ``hq report --html``."""
    folder = tmp_path_factory.mktemp("html")
    out = folder / "report.html"
    made = _hq_report("--db", str(hq_db), "--html", str(out), "--store-config", str(DEMO_TOML))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == f"journey report: {out}"
    with open_page(out.as_uri(), folder / "profile") as page:
        stores = json.loads(page.evaluate(READ_PAGE))
        shot = page.screenshot(1280)
    return stores, page, shot


def test_the_page_renders_in_chromium_without_console_errors(rendered: Any, tmp_path: Path) -> None:
    _, page, _ = rendered
    assert page.problems() == []
    # Self-contained: the browser fetched the file itself and nothing else.
    assert len(page.requests) == 1
    assert page.requests[0].startswith("file://")


def test_the_floor_plan_and_every_chart_are_present(rendered: Any) -> None:
    stores, _, _ = rendered
    by_id = {s["store"]: s for s in stores}
    assert set(by_id) == {"demo-0001", OTHER}
    demo, other = by_id["demo-0001"], by_id[OTHER]
    assert demo["plans"] == len(demo["days"]) == 1
    assert demo["receivers"] == 9
    assert other["plans"] == 0  # no layout: a note instead, every chart still there
    for store in (demo, other):
        for day in store["days"]:
            assert set(CHARTS) <= set(day["charts"]), day["charts"]
    (day,) = demo["days"]
    assert day["bins"]  # the waits histogram has bars
    assert day["footfall"]  # and the footfall chart its intervals
    assert day["flows"]


def test_the_screenshot_is_not_blank(rendered: Any) -> None:
    _, _, shot = rendered
    width, height, rows = png_pixels(shot)
    assert width == 1280
    assert height > 1500  # the whole page, not a viewport
    step = len(rows[0]) // width
    pixels = Counter(row[i : i + 3] for row in rows[::4] for i in range(0, len(row), step * 4))
    white = pixels[b"\xff\xff\xff"]
    assert len(pixels) > 50  # the heat map, bars and text in many colours
    assert white / sum(pixels.values()) < 0.9


def test_the_figures_in_the_page_are_hq_report_json(rendered: Any, hq_db: Path) -> None:
    stores, _, _ = rendered
    made = _hq_report("--db", str(hq_db), "--json")
    assert made.returncode == 0, made.stderr
    expected = json.loads(made.stdout)
    assert {s["store"] for s in stores} == set(expected)
    for store in stores:
        want = expected[store["store"]]
        days = store["days"]

        def total(name: str, days: list[dict[str, Any]] = days) -> float:
            return sum(float(d["figures"][name]) for d in days)

        assert total("visits") == want["visits"]
        assert total("visit-seconds") == pytest.approx(want["visit_seconds"], rel=1e-9)
        dwell: Counter[str] = Counter()
        for day in days:
            for zone, seconds in day["dwell"]:
                dwell[zone] += seconds
        assert {z: s for z, s in dwell.items() if s} == pytest.approx(want["zone_dwell_s"], rel=1e-9)
        assert total("footfall-entries") == want["footfall_entries"]
        assert sum(sum(d["footfall"]) for d in days) == want["footfall_entries"]
        assert _merged(days, "notifications") == want["notifications_sent"]
        assert total("notifications") == sum(want["notifications_sent"].values())
        assert _merged(days, "suppressed") == want["notifications_suppressed"]
        assert total("suppressed") == sum(want["notifications_suppressed"].values())
        assert total("collections") == want["collections"]
        assert sum(d["funnel"].get("collected", 0) for d in days) == want["collections"]
        assert sum(sum(d["bins"]) for d in days) == want["collections"]
        # The funnel's steps after the arrival: kept waiting, and left without the order.
        assert sum(d["funnel"].get("counter_wait", -1) for d in days) == want["counter_waits"]
        assert sum(d["funnel"].get("left_uncollected", -1) for d in days) == want["left_uncollected"]
        if len(days) == 1:
            median = days[0]["median"]
            assert (float(median) if median else None) == want["arrival_to_collection_median_s"]
        key = lambda g: (g["boot_id"], g["stream"])  # noqa: E731
        assert sorted(store["seqGaps"], key=key) == sorted(want["gaps"], key=key)
    demo = expected["demo-0001"]
    assert demo["collections"] > 0  # the cases added are in both
    assert demo["counter_waits"] > 0  # the demo day keeps some waiting and some leave without
    assert demo["left_uncollected"] > 0
    assert demo["gaps"]
    assert expected[OTHER]["visits"] > 0


def _merged(days: list[dict[str, Any]], name: str) -> dict[str, int]:
    merged: Counter[str] = Counter()
    for day in days:
        for key, count in day[name]:
            merged[key] += count
    return dict(merged)

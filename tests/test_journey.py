"""Journey scenarios, replayed: traces of a shopper walking in, downlinks from HQ arriving before
or during the visit, and exactly the notifications (or recorded suppressions) a user expects."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from edge_agent.cli import main
from edge_agent.core.journey.durable import StateChange
from edge_agent.core.trace import format_trace_line
from edge_agent.core.validation import config_from_mapping
from edge_agent.tools.replay import replay
from tests.helpers import KEYS, app_sighting

T0 = 1_764_000_000.0  # 2025-11-24 17:00 in Rome: inside opening hours
ZONES = ("entrance", "shop", "counter")


def _config(
    presence: dict[str, Any] | None = None, footfall: dict[str, Any] | None = None, **rules: Any
) -> Any:
    """The three-zone store the journey tests walk through (entrance, shop, counter), its
    ``presence`` and ``footfall`` sections and its ``rules`` overridden where a test says."""
    return config_from_mapping(
        {
            "store": {"id": "s1", "timezone": "Europe/Rome", "entrance_zone": "entrance"},
            "zones": [
                {"id": "entrance", "adjacent": ["shop"]},
                {"id": "shop", "adjacent": ["counter"]},
                {"id": "counter"},
            ],
            "receivers": [{"id": z, "zone": z} for z in ZONES],
            "presence": presence or {"absence_timeout_s": 60, "zone_min_s": 2},
            **({"footfall": footfall} if footfall else {}),
            "rules": {"click_and_collect": {"pickup_zone": "counter"}, **rules},
        }
    )


def _walk(customer: str, legs: Sequence[tuple[str, int]], start: float = T0) -> list[str]:
    """Trace lines: one advertisement a second heard by every receiver, loudest where the shopper is."""
    lines, ts = [], start
    for zone, seconds in legs:
        for _ in range(seconds):
            for receiver in ZONES:
                lines.append(
                    format_trace_line(app_sighting(customer, ts, receiver, -55 if receiver == zone else -80))
                )
            ts += 1.0
    return lines


def _customers(*records: tuple[str, bool, bool]) -> tuple[str, bytes]:
    body = {
        "schema": "customers.v1", "message_id": "reg-1",
        "upsert": [{"customer_id": c, "identity_key": KEYS[c].hex(),
                    "consent": {"service": s, "marketing": m}} for c, s, m in records],
    }  # fmt: skip
    return "customers", json.dumps(body).encode()


def _downlink(kind: str, **body: Any) -> tuple[str, bytes]:
    return kind, json.dumps({"schema": f"{kind}.v1", "message_id": f"{kind}-{len(body)}", **body}).encode()


def _order(status: str = "ready", version: int = 1) -> tuple[str, bytes]:
    order = {
        "order_id": "O-7",
        "customer_id": "c1",
        "status": status,
        "version": version,
        "pickup_point": "Counter B",
    }
    return _downlink("orders", orders=[order])


def _run(
    config: Any,
    trace: list[str],
    downlinks: Sequence[tuple[str, bytes]],
    timed: Sequence[tuple[str, bytes, str]] = (),
) -> list[dict[str, Any]]:
    out = io.StringIO()
    report = replay(config, trace, out, downlinks=downlinks, timed_downlinks=timed)
    assert report.downlinks_rejected == 0
    return [json.loads(line)["payload"] for line in out.getvalue().splitlines()]


def _of(messages: list[dict[str, Any]], schema: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["schema"] == schema]


CNC_WALK = (("entrance", 20), ("shop", 40), ("counter", 60))


def test_ready_order_gives_one_customer_and_one_staff_notification_then_a_counter_alert_and_collection() -> (
    None
):
    kind, collected = _order("collected", version=2)
    messages = _run(
        _config(),
        _walk("c1", CNC_WALK),
        [_customers(("c1", True, False)), _order()],
        timed=[(kind, collected, "+110")],
    )
    notifications = _of(messages, "notification.v1")
    assert [(n["audience"], n["template"]) for n in notifications] == [
        ("customer", "cnc.arrival.customer"), ("staff", "cnc.arrival.staff"), ("staff", "cnc.counter.staff"),
    ]  # fmt: skip
    assert notifications[0]["channel"] == "push"
    assert notifications[1]["channel"] == "staff_device"
    assert "O-7" in notifications[0]["text"]
    assert "Counter B" in notifications[0]["text"]
    orders = _of(messages, "order.v1")
    assert [o["phase"] for o in orders] == ["arrived", "at_counter", "collected"]
    assert orders[2]["arrival_to_collection_s"] == pytest.approx(110, abs=1)
    visit_id = _of(messages, "visit.v1")[0]["visit_id"]
    assert {m["visit_id"] for m in notifications + orders} == {visit_id}  # one journey
    assert _of(messages, "suppressed.v1") == []


def test_a_customer_without_service_consent_gets_no_click_and_collect_and_the_suppression_is_recorded() -> (
    None
):
    messages = _run(_config(), _walk("c1", CNC_WALK), [_customers(("c1", False, True)), _order()])
    assert _of(messages, "notification.v1") == []
    suppressed = _of(messages, "suppressed.v1")
    assert {(s["template"], s["reason"]) for s in suppressed} == {
        ("cnc.arrival.customer", "no service consent"), ("cnc.arrival.staff", "no service consent"),
        ("cnc.counter.staff", "no service consent"), ("staff.left_uncollected", "no service consent"),
    }  # fmt: skip


def test_quiet_hours_silence_the_customer_but_not_the_staff() -> None:
    config = _config(guards={"quiet_hours_start": "16:30", "quiet_hours_end": "18:00"})  # T0 is 17:00 local
    messages = _run(config, _walk("c1", CNC_WALK), [_customers(("c1", True, True)), _order()])
    assert [n["template"] for n in _of(messages, "notification.v1")] == [
        "cnc.arrival.staff",
        "cnc.counter.staff",
        "staff.left_uncollected",  # the visit ended with the order not handed over
    ]
    assert [(s["template"], s["reason"]) for s in _of(messages, "suppressed.v1")] == [
        ("cnc.arrival.customer", "quiet hours")
    ]


PLANOGRAM = {
    "items": [
        {
            "sku": "SKU-1",
            "name": "Espresso beans",
            "zone": "shop",
            "aisle": "4",
            "shelf": "B",
            "in_stock": True,
        },
        {
            "sku": "SKU-2",
            "name": "Milk frother",
            "zone": "shop",
            "aisle": "7",
            "shelf": "A",
            "in_stock": False,
        },
        {"sku": "SKU-3", "name": "Mugs", "zone": "counter", "aisle": "9", "shelf": "C", "in_stock": True},
    ]
}
SHOPPING_LIST = {
    "lists": [
        {"customer_id": "c1", "version": 1, "items": [
            {"sku": "SKU-2", "source": "wishlist"}, {"sku": "SKU-1", "source": "cart"},
            {"sku": "SKU-3", "source": "search"},
        ]},
    ]
}  # fmt: skip


def test_list_items_out_of_stock_are_never_suggested_and_nothing_twice_in_a_visit() -> None:
    config = _config(shelf_location={"trigger": "zone"}, guards={"min_gap_s": 0})
    walk = (("entrance", 10), ("shop", 30), ("counter", 20), ("shop", 30))  # back into the shop
    messages = _run(
        config, _walk("c1", walk),
        [_customers(("c1", True, True)), _downlink("planogram", **PLANOGRAM),
         _downlink("lists", **SHOPPING_LIST)],
    )  # fmt: skip
    shelf = [n for n in _of(messages, "notification.v1") if n["template"] == "shelf.location"]
    assert [n["data"]["skus"] for n in shelf] == [
        "SKU-1",
        "SKU-3",
    ]  # shop, then counter; not SKU-2, not again
    assert "Espresso beans (aisle 4, shelf B)" in shelf[0]["text"]
    assert "Milk frother" not in json.dumps(_of(messages, "notification.v1"))


def test_caps_suppress_what_would_exceed_them() -> None:
    config = _config(guards={"max_per_visit": 1, "min_gap_s": 0})
    messages = _run(
        config, _walk("c1", CNC_WALK),
        [_customers(("c1", True, True)), _order(), _downlink("planogram", **PLANOGRAM),
         _downlink("lists", **SHOPPING_LIST)],
    )  # fmt: skip
    customer = [n for n in _of(messages, "notification.v1") if n["audience"] == "customer"]
    assert [n["template"] for n in customer] == ["cnc.arrival.customer"]
    assert [(s["template"], s["reason"]) for s in _of(messages, "suppressed.v1")] == [
        ("shelf.location", "visit cap reached")
    ]


def test_minimum_gap_between_notifications() -> None:
    messages = _run(
        _config(guards={"min_gap_s": 120}), _walk("c1", CNC_WALK),
        [_customers(("c1", True, True)), _order(), _downlink("planogram", **PLANOGRAM),
         _downlink("lists", **SHOPPING_LIST)],
    )  # fmt: skip
    assert ("shelf.location", "minimum gap") in {
        (s["template"], s["reason"]) for s in _of(messages, "suppressed.v1")
    }


OFFERS = {
    "offers": [
        {"offer_id": "OF-1", "match_sku": "SKU-1", "coupon": "GRIND10", "product": "a coffee grinder",
         "valid_from": "2025-11-01T00:00:00Z", "valid_until": "2025-12-31T00:00:00Z"},
    ]
}  # fmt: skip
RECEIPT = {
    "receipts": [
        {"receipt_id": "R-1", "customer_id": "c1", "total": 12.5,
         "items": [{"sku": "SKU-1", "quantity": 1, "price": 12.5}]},
    ]
}  # fmt: skip


@pytest.mark.parametrize(("marketing", "thanked"), [(True, True), (False, False)])
def test_a_receipt_in_the_visit_leads_to_a_thank_you_with_a_coupon_only_with_marketing_consent(
    marketing: bool, thanked: bool
) -> None:
    kind, receipt = _downlink("receipts", **RECEIPT)
    messages = _run(
        _config(), _walk("c1", (("entrance", 10), ("shop", 60), ("entrance", 10))),
        [_customers(("c1", True, marketing)), _downlink("offers", **OFFERS)], timed=[(kind, receipt, "+40")],
    )  # fmt: skip
    [purchase] = _of(messages, "purchase.v1")
    visit = _of(messages, "visit.v1")
    assert purchase["visit_id"] == visit[0]["visit_id"]
    thanks = [n for n in _of(messages, "notification.v1") if n["template"] == "post_purchase.thanks"]
    if thanked:
        [note] = thanks
        assert note["data"]["coupon"] == "GRIND10"
        assert "GRIND10" in note["text"]
        assert "feedback" in note["text"]
        # sent when the visit ends (the outbox then sends it first: notifications outrank visits)
        assert note["ts"] == visit[-1]["ts"]
        assert visit[-1]["phase"] == "ended"
    else:
        assert thanks == []
        assert ("post_purchase.thanks", "no marketing consent") in {
            (s["template"], s["reason"]) for s in _of(messages, "suppressed.v1")
        }


def test_italian_texts_and_overrides_from_the_toml() -> None:
    config = _config(
        language="it", templates={"cnc.arrival.staff": {"it": "Ordine {order_id}: cliente arrivato"}}
    )
    messages = _run(config, _walk("c1", CNC_WALK), [_customers(("c1", True, False)), _order()])
    texts = [n["text"] for n in _of(messages, "notification.v1")]
    assert texts[0].startswith("Benvenuto! Il tuo ordine O-7")
    assert texts[1] == "Ordine O-7: cliente arrivato"


def test_replay_command_applies_a_downlink_in_the_middle_of_the_day(tmp_path: Path) -> None:
    config_file = tmp_path / "store.toml"
    config_file.write_text(
        '[store]\nid = "s1"\ntimezone = "Europe/Rome"\n'
        + "".join(f'[[zones]]\nid = "{z}"\n' for z in ZONES)
        + "".join(f'[[receivers]]\nid = "{z}"\nzone = "{z}"\n' for z in ZONES)
    )
    trace = tmp_path / "trace.jsonl"
    trace.write_text("\n".join(_walk("c1", (("entrance", 10), ("shop", 60)))) + "\n")
    files = {}
    for name, (_, payload) in {
        "customers": _customers(("c1", True, True)),
        "receipts": _downlink("receipts", **RECEIPT),
    }.items():
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_bytes(payload + b"\n")
    out = tmp_path / "out.jsonl"
    code = main([
        "replay", str(trace), "--config", str(config_file), "--output", str(out),
        "--downlink", f"customers={files['customers']}", "--downlink", f"receipts={files['receipts']}@+30",
    ])  # fmt: skip
    assert code == 0
    payloads = [json.loads(line)["payload"] for line in out.read_text().splitlines()]
    [purchase] = _of(payloads, "purchase.v1")
    assert purchase["visit_id"] is not None
    assert (
        main(
            [
                "replay",
                str(trace),
                "--config",
                str(config_file),
                "--downlink",
                f"receipts={files['receipts']}@soon",
            ]
        )
        == 2
    )


def _store_file(tmp_path: Path) -> Path:
    config_file = tmp_path / "store.toml"
    config_file.write_text(
        f'[store]\nid = "s1"\ntimezone = "Europe/Rome"\n[storage]\npath = "{tmp_path / "agent.db"}"\n'
        '[rules.click_and_collect]\npickup_zone = "counter"\n[presence]\nzone_min_s = 2\n'
        + "".join(f'[[zones]]\nid = "{z}"\n' for z in ZONES)
        + "".join(f'[[receivers]]\nid = "{z}"\nzone = "{z}"\n' for z in ZONES)
    )
    return config_file


def test_journey_command_shows_one_customers_touchpoints_and_erasure_removes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.adapters.configfile import load_config
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.trace import parse_trace_line
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database
    from edge_agent.tools.simclock import SimulatedRun

    config_file = _store_file(tmp_path)
    config = load_config(config_file)
    database = Database(config.storage.path)
    pipeline = Pipeline(config, database, EventIdFactory.seeded("journey"))
    for kind, payload in (_customers(("c1", True, True), ("c2", True, True)), _order()):
        assert pipeline.downlink(pipeline.topics.downlink(kind), payload, T0)
    run = SimulatedRun(pipeline)
    run.feed(parse_trace_line(line) for line in _walk("c1", CNC_WALK))
    run.finish()
    database.close()

    assert main(["journey", "c1", "--config", str(config_file), "--date", "2025-11-24"]) == 0
    shown = capsys.readouterr().out
    for expected in ("entry", "order O-7 arrived", "cnc.arrival.customer", "entered counter", "exit"):
        assert expected in shown, expected
    assert main(["journey", "c1", "--config", str(config_file), "--date", "2025-11-25"]) == 1
    assert "no journey kept for c1 on 2025-11-25" in capsys.readouterr().err

    database = Database(config.storage.path)
    pipeline = Pipeline(config, database, EventIdFactory.seeded("journey-2"))
    erase = json.dumps({"schema": "customers.v1", "message_id": "reg-9", "delete": ["c1"]}).encode()
    assert pipeline.downlink(pipeline.topics.downlink("customers"), erase, T0 + 3600)
    database.close()
    assert main(["journey", "c1", "--config", str(config_file)]) == 1
    assert "no journey kept for c1" in capsys.readouterr().err


def _journey_of_c1(tmp_path: Path, legs: Sequence[tuple[str, int]]) -> tuple[Path, list[dict[str, Any]]]:
    """The store file of a pipeline run of ``c1`` walking ``legs``, and the messages it emitted."""
    from edge_agent.adapters.configfile import load_config
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.trace import parse_trace_line
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database
    from edge_agent.tools.simclock import SimulatedRun

    config_file = _store_file(tmp_path)
    config = load_config(config_file)
    database = Database(config.storage.path)
    pipeline = Pipeline(config, database, EventIdFactory.seeded("journey-times"))
    for kind, payload in (_customers(("c1", True, True)), _order()):
        assert pipeline.downlink(pipeline.topics.downlink(kind), payload, T0)
    run = SimulatedRun(pipeline)
    run.feed(parse_trace_line(line) for line in _walk("c1", legs))
    run.finish()
    messages = pipeline.outbox.peek_payloads()
    database.close()
    return config_file, messages


def test_a_journeys_zone_line_shows_when_the_shopper_entered_and_a_dwell_line_when_the_threshold_was_met(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    # 80 s in the shop: longer than presence.dwell_s (60 s), so the shop has a dwell line too.
    config_file, messages = _journey_of_c1(tmp_path, (("entrance", 20), ("shop", 80), ("counter", 60)))
    assert main(["journey", "c1", "--config", str(config_file)]) == 0
    _, *lines = capsys.readouterr().out.splitlines()
    shown = [(line[:19], line.split(maxsplit=5)[5]) for line in lines]  # (local time, detail)

    def local(utc_text: str, later_s: float = 0.0) -> str:
        moment = datetime.fromisoformat(utc_text) + timedelta(seconds=later_s)
        return moment.astimezone(ZoneInfo("Europe/Rome")).strftime("%Y-%m-%d %H:%M:%S")

    zones = _of(messages, "zone.v1")
    assert [z["zone"] for z in zones] == ["entrance", "shop", "counter"]
    assert any(z["entered_at"] != z["ts"] for z in zones)  # a move is emitted after its lead began
    for zone in zones:
        [when] = [t for t, detail in shown if detail.startswith(f"entered {zone['zone']}")]
        assert when == local(zone["entered_at"]), zone
    [dwell] = [d for d in _of(messages, "dwell.v1") if d["zone"] == "shop"]
    [when] = [t for t, detail in shown if detail.startswith("dwelling in shop")]
    assert when == local(dwell["entered_at"], dwell["dwell_s"])
    assert [t for t, _ in shown] == sorted(t for t, _ in shown)  # in the order of the times shown


def test_the_journey_of_a_customer_the_store_keeps_nothing_about_exits_1_and_says_why_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file, _ = _journey_of_c1(tmp_path, CNC_WALK)
    assert main(["journey", "UNKNOWN-ID", "--config", str(config_file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("no journey kept for UNKNOWN-ID: this store keeps none for that customer")
    for reason in ("erased", "never recognised", "storage.journey_days = 7 days"):
        assert reason in captured.err, reason
    assert main(["journey", "c1", "--config", str(config_file), "--date", "2025-11-23"]) == 1
    assert "no journey kept for c1 on 2025-11-23" in capsys.readouterr().err
    assert main(["journey", "c1", "--config", str(config_file), "--date", "2025-11-24"]) == 0


def test_lists_planogram_offers_and_receipts_survive_a_restart_and_their_log_stays_small(
    tmp_path: Path,
) -> None:
    from edge_agent.adapters.configfile import load_config
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database

    config = load_config(_store_file(tmp_path))

    def pipeline() -> Pipeline:
        return Pipeline(config, Database(config.storage.path), EventIdFactory())

    first = pipeline()
    for version in range(1, 30):  # HQ keeps updating the list: the log must not keep every one
        listed = {"lists": [{**SHOPPING_LIST["lists"][0], "version": version}]}
        first.downlink(first.topics.downlink("lists"), _downlink("lists", **listed)[1], T0 + version)
    for kind, body in (("planogram", PLANOGRAM), ("offers", OFFERS), ("receipts", RECEIPT)):
        assert first.downlink(first.topics.downlink(kind), _downlink(kind, **body)[1], T0 + 40)
    first.tick(T0 + 50)  # the hourly housekeeping runs on the first tick
    first.database.close()

    second = pipeline()
    rules = second.core.journey
    assert rules.lists["c1"].version == 29
    assert rules.planogram["SKU-2"].in_stock is False
    assert "OF-1" in rules.offers
    assert second.downlink(second.topics.downlink("receipts"), _downlink("receipts", **RECEIPT)[1], T0 + 60)
    purchases = [p for p in second.outbox.peek_payloads() if p["schema"] == "purchase.v1"]
    assert len(purchases) == 1  # the first delivery's; the resent receipt was recognised
    with sqlite3.connect(config.storage.path) as conn:
        logged = conn.execute("SELECT count(*) FROM downlink_log").fetchone()[0]
    assert logged <= 5


def test_erase_removes_a_customer_from_every_table_and_from_the_files_bytes(tmp_path: Path) -> None:
    from edge_agent.adapters.configfile import load_config
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.trace import parse_trace_line
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database
    from edge_agent.tools.simclock import SimulatedRun

    config = load_config(_store_file(tmp_path))
    database = Database(config.storage.path)
    pipeline = Pipeline(config, database, EventIdFactory.seeded("erase"))
    for kind, payload in (
        _customers(("c1", True, True), ("c2", True, True)), _order(), _downlink("lists", **SHOPPING_LIST),
        _downlink("planogram", **PLANOGRAM),
    ):  # fmt: skip
        assert pipeline.downlink(pipeline.topics.downlink(kind), payload, T0)
    run = SimulatedRun(pipeline)
    run.feed(parse_trace_line(line) for line in _walk("c1", (("entrance", 10), ("shop", 30))))  # still inside
    assert pipeline.core.open_visits == 1
    assert any(p.get("customer_id") == "c1" for p in pipeline.outbox.peek_payloads())  # unsent, about c1

    erase = {"schema": "commands.v1", "message_id": "cmd-1",
             "commands": [{"command": "erase", "customer_id": "c1", "request_id": "GDPR-77"}]}  # fmt: skip
    kind, receipt_body = _downlink("receipts", **RECEIPT)  # bought something, still inside
    assert pipeline.downlink(pipeline.topics.downlink(kind), receipt_body, T0 + 40)
    assert pipeline.downlink(pipeline.topics.downlink("commands"), json.dumps(erase).encode(), T0 + 41)
    assert "c1" not in _strings_in(pipeline.core.journey)  # nor the receipt bought in the dropped visit
    payloads = pipeline.outbox.peek_payloads()
    [receipt] = [p for p in payloads if p["schema"] == "erasure.v1"]
    assert receipt["request_id"] == "GDPR-77"
    assert receipt["registry"] is True
    assert receipt["open_visit_removed"] is True
    assert receipt["unsent_messages_removed"] >= 3
    assert [p for p in payloads if p.get("customer_id") == "c1"] == [receipt]  # nothing else about them
    with sqlite3.connect(config.storage.path) as conn:  # the byte count kept by the erasure itself
        assert pipeline.outbox.bytes == conn.execute("SELECT sum(length(payload)) FROM outbox").fetchone()[0]
    assert pipeline.core.open_visits == 0

    run.feed(parse_trace_line(line) for line in _walk("c1", (("shop", 30),), start=T0 + 42))  # still walking
    run.finish()
    assert [p for p in pipeline.outbox.peek_payloads() if p.get("customer_id") == "c1"] == [receipt]
    # HQ acknowledges everything, the receipt included (the link deletes rows on PUBACK).
    pipeline.outbox.acknowledge([row.id for row in pipeline.outbox.due(100_000)])
    database.checkpoint()
    database.close()

    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("agent.db"))
    assert b"c2" in stored  # the other customer is still there: the scan can find a customer id
    for secret in (b'"c1"', KEYS["c1"], KEYS["c1"].hex().encode()):
        assert secret not in stored, secret
    assert KEYS["c2"] in stored


def _strings_in(root: object) -> set[str]:
    """Every string reachable from ``root`` through containers and attributes (for "forgotten")."""
    seen: set[int] = set()
    found: set[str] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, StateChange) and item.record is None:
            continue  # a delete of a kept row on its way to the state store: it names what goes
        if isinstance(item, str):
            found.add(item)
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple | set | frozenset):
            stack += list(item)
        elif hasattr(item, "__dict__") or hasattr(type(item), "__slots__"):
            names = list(getattr(item, "__dict__", {}))
            for cls in type(item).__mro__:
                names += [n for n in getattr(cls, "__slots__", ()) if isinstance(n, str)]
            stack += [getattr(item, n) for n in names if hasattr(item, n) and not callable(getattr(item, n))]
    return found


def test_a_local_day_runs_from_midnight_to_midnight_in_the_stores_time_zone() -> None:
    from datetime import date

    from edge_agent.storage.journeyview import local_day_bounds

    since, until = local_day_bounds(date(2025, 11, 24), "Europe/Rome")
    assert since == 1_763_938_800.0  # 2025-11-23T23:00:00Z
    assert until - since == 86_400
    since, until = local_day_bounds(date(2025, 3, 30), "Europe/Rome")  # the clocks go forward
    assert until - since == 23 * 3600

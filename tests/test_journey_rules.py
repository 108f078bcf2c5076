"""The rules that act while the shopper is still in the store, replayed on traces built for each:
counter wait, left without collecting, assistance, queues, loyalty check-in, coupon redemption,
touchpoint outcomes and why a rule did not act. Each fires exactly when it should, and not
otherwise (at the threshold second, the repeat interval, local midnight, quiet hours)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge_agent.core.trace import format_trace_line
from tests.helpers import phone_sighting
from tests.test_journey import (
    OFFERS,
    PLANOGRAM,
    RECEIPT,
    SHOPPING_LIST,
    T0,
    ZONES,
    _customers,
    _downlink,
    _of,
    _order,
    _run,
    _walk,
)
from tests.test_journey import _config as journey_config

ROME = ZoneInfo("Europe/Rome")


def _config(**rules: Any) -> Any:
    return journey_config(footfall={"interval_s": 60}, **rules)


def _ts(message: dict[str, Any], key: str = "ts") -> float:
    return datetime.fromisoformat(message[key]).timestamp()


def _moments(found: list[tuple[float, tuple[str, str]]]) -> list[set[tuple[str, str]]]:
    """What was said, moment by moment (at one moment the outbox sends notifications first)."""
    moments: dict[float, set[tuple[str, str]]] = {}
    for ts, item in found:
        moments.setdefault(ts, set()).add(item)
    return [moments[ts] for ts in sorted(moments)]


def _about_order(messages: list[dict[str, Any]], order_id: str) -> list[tuple[str, str]]:
    """Everything said about one order, in order: order phases and who was told what."""
    return [item for moment in _moments(_timed_about_order(messages, order_id)) for item in sorted(moment)]


def _timed_about_order(messages: list[dict[str, Any]], order_id: str) -> list[tuple[float, tuple[str, str]]]:
    found: list[tuple[float, tuple[str, str]]] = []
    for m in messages:
        if m["schema"] == "order.v1" and m["order_id"] == order_id:
            found.append((_ts(m), ("order", m["phase"])))
        elif m["schema"] == "notification.v1" and m["data"].get("order_id") == order_id:
            found.append((_ts(m), (m["audience"], m["template"])))
        elif m["schema"] == "suppressed.v1" and m["template"].startswith(("cnc.", "staff.")):
            found.append((_ts(m), (m["audience"], m["template"] + " suppressed")))
    return found


def _counter_entry(messages: list[dict[str, Any]]) -> float:
    [zone] = [z for z in _of(messages, "zone.v1") if z["zone"] == "counter"]
    return _ts(zone, "entered_at")


# ---------------------------------------------------------------- counter wait, left uncollected


def test_a_customer_kept_waiting_then_leaving_without_the_order_gives_exactly_these_in_order() -> None:
    config = _config(counter_wait={"after_s": 40, "repeat_s": 120})
    walk = (("entrance", 10), ("shop", 10), ("counter", 50))  # 40 s at the counter and a few more
    messages = _run(config, _walk("c1", walk), [_customers(("c1", True, False)), _order()])
    assert _moments(_timed_about_order(messages, "O-7")) == [
        {("order", "arrived"), ("customer", "cnc.arrival.customer"), ("staff", "cnc.arrival.staff")},
        {("order", "at_counter"), ("staff", "cnc.counter.staff")},
        {("order", "counter_wait"), ("staff", "staff.counter_wait")},
        {("order", "left_uncollected"), ("staff", "staff.left_uncollected")},
    ]  # fmt: skip
    [wait] = [o for o in _of(messages, "order.v1") if o["phase"] == "counter_wait"]
    assert 40 <= wait["wait_s"] < 41.5  # the threshold second, on the tick
    assert 40 <= _ts(wait) - _counter_entry(messages) < 41.5
    [left] = [o for o in _of(messages, "order.v1") if o["phase"] == "left_uncollected"]
    [ended] = [v for v in _of(messages, "visit.v1") if v["phase"] == "ended"]
    assert left["time_in_store_s"] == pytest.approx(ended["duration_s"])
    assert left["time_at_counter_s"] == pytest.approx(48, abs=3)
    [staff] = [n for n in _of(messages, "notification.v1") if n["template"] == "staff.left_uncollected"]
    assert "O-7" in staff["text"]
    assert staff["channel"] == "staff_device"
    # The arrival message's outcome: the shopper did reach the counter.
    [outcome] = [o for o in _of(messages, "outcome.v1") if o["template"] == "cnc.arrival.customer"]
    assert (outcome["result"], outcome["success"]) == ("reached_counter", True)


def test_the_counter_wait_repeats_every_repeat_s_and_not_in_between() -> None:
    config = _config(counter_wait={"after_s": 30, "repeat_s": 20})
    walk = (("entrance", 10), ("shop", 10), ("counter", 95))
    messages = _run(config, _walk("c1", walk), [_customers(("c1", True, False)), _order()])
    waits = [o for o in _of(messages, "order.v1") if o["phase"] == "counter_wait"]
    entered = _counter_entry(messages)
    # 30 s, 50 s, 70 s, 90 s at the counter; the shopper is heard there until about 94 s.
    assert [round(_ts(w) - entered) for w in waits] == [30, 50, 70, 90]
    staff = [n for n in _of(messages, "notification.v1") if n["template"] == "staff.counter_wait"]
    assert len(staff) == len(waits)


def test_no_counter_wait_nor_left_uncollected_when_the_order_is_collected_in_time() -> None:
    config = _config(counter_wait={"after_s": 40, "repeat_s": 120})
    kind, collected = _order("collected", version=2)
    walk = (("entrance", 10), ("shop", 10), ("counter", 60))
    messages = _run(
        config,
        _walk("c1", walk),
        [_customers(("c1", True, False)), _order()],
        timed=[(kind, collected, "+50")],
    )
    assert [p for _, p in _about_order(messages, "O-7") if _ == "order"] == [
        "arrived",
        "at_counter",
        "collected",
    ]


def test_staff_hear_of_a_waiting_customer_in_quiet_hours_the_customer_hears_nothing() -> None:
    config = _config(
        counter_wait={"after_s": 30, "repeat_s": 300},
        guards={"quiet_hours_start": "16:30", "quiet_hours_end": "18:00"},  # T0 is 17:00 local
    )
    walk = (("entrance", 10), ("shop", 10), ("counter", 40))
    messages = _run(config, _walk("c1", walk), [_customers(("c1", True, True)), _order()])
    sent = [(n["audience"], n["template"]) for n in _of(messages, "notification.v1")]
    assert ("staff", "staff.counter_wait") in sent
    assert ("staff", "staff.left_uncollected") in sent
    assert all(audience == "staff" for audience, _ in sent)


# ---------------------------------------------------------------- assistance


@pytest.mark.parametrize(("seconds", "alerts"), [(25, 0), (45, 1)])
def test_a_customer_lingering_in_an_assisted_zone_is_named_to_staff_once_past_after_s(
    seconds: int, alerts: int
) -> None:
    config = _config(assist={"zones": ["shop"], "after_s": 30})
    walk = (("entrance", 10), ("shop", seconds), ("entrance", 10))
    messages = _run(config, _walk("c1", walk), [_customers(("c1", True, False))])
    assists = [n for n in _of(messages, "notification.v1") if n["template"] == "staff.assist"]
    assert len(assists) == alerts
    if alerts:
        assert assists[0]["data"]["zone"] == "shop"
        assert "shop" in assists[0]["text"]
        [shop] = [z for z in _of(messages, "zone.v1") if z["zone"] == "shop"]
        assert 30 <= _ts(assists[0]) - _ts(shop, "entered_at") < 31.5


def test_assistance_needs_the_customers_service_consent_and_is_audited_without_it() -> None:
    config = _config(assist={"zones": ["shop"], "after_s": 30})
    walk = (("entrance", 10), ("shop", 45))
    messages = _run(config, _walk("c1", walk), [_customers(("c1", False, True))])
    assert [n for n in _of(messages, "notification.v1") if n["template"] == "staff.assist"] == []
    assert ("staff.assist", "no service consent") in {
        (s["template"], s["reason"]) for s in _of(messages, "suppressed.v1")
    }


def test_a_second_stay_in_the_zone_is_a_new_assistance_alert() -> None:
    config = _config(assist={"zones": ["shop"], "after_s": 20})
    walk = (("entrance", 10), ("shop", 30), ("counter", 10), ("shop", 30))
    messages = _run(config, _walk("c1", walk), [_customers(("c1", True, False))])
    assert len([n for n in _of(messages, "notification.v1") if n["template"] == "staff.assist"]) == 2


# ---------------------------------------------------------------- queue and zone occupancy


def _crowd(counts: list[tuple[int, int]], start: float = T0) -> list[str]:
    """Anonymous phones at the counter: (how many, for how many seconds) one phase after another.
    Phone i is heard loudest at the counter once a second while it is in the crowd."""
    lines, ts = [], start
    for people, seconds in counts:
        for _ in range(seconds):
            for i in range(people):
                address = f"6A:00:00:00:00:{i:02X}"
                for receiver in ZONES:
                    rssi = -50 if receiver == "counter" else -80
                    lines.append(format_trace_line(phone_sighting(address, ts, receiver, rssi)))
            ts += 1.0
    return lines


def test_footfall_carries_everyones_occupancy_per_zone_without_identities() -> None:
    messages = _run(_config(), _crowd([(3, 70)]), [])
    footfall = _of(messages, "footfall.v1")
    assert footfall
    assert footfall[0]["zones"] == {"counter": 3}
    assert "6A:00" not in json.dumps(footfall)


def test_a_queue_alerts_staff_once_with_hysteresis_and_again_after_it_cleared() -> None:
    config = _config(queue={"zones": ["counter"], "above": 4, "clear_at": 1, "for_s": 10})
    # 5 people for 40 s (one alert), hovering between the marks (3) for 60 s (none: not re-armed),
    # back to 5 (still none), then gone long enough to clear, and 5 again (a second alert).
    trace = _crowd([(5, 40), (3, 60), (5, 30), (0, 0)])
    trace += _crowd([(5, 40)], start=T0 + 130 + 60)
    messages = _run(config, trace, [])
    alerts = _of(messages, "staff_alert.v1")
    assert [(a["template"], a["zone"]) for a in alerts] == [("staff.queue", "counter")] * 2
    first, second = (_ts(a) for a in alerts)
    assert 10 <= first - T0 < 11.5  # the threshold held for for_s
    assert second >= T0 + 190 + 10
    assert "open another till" in alerts[0]["text"]


def test_a_crowd_shorter_than_for_s_is_no_queue() -> None:
    config = _config(queue={"zones": ["counter"], "above": 4, "clear_at": 1, "for_s": 30})
    messages = _run(config, _crowd([(5, 15)]), [])  # counted until heard 10 s ago: 25 s in all
    assert _of(messages, "staff_alert.v1") == []


# ---------------------------------------------------------------- loyalty check-in


def _visits(*starts: float, customer: str = "c1", seconds: int = 20) -> list[str]:
    lines: list[str] = []
    for start in starts:
        lines += _walk(customer, (("entrance", seconds),), start=start)
    return lines


def _local_midnight_after(ts: float) -> float:
    local = datetime.fromtimestamp(ts, ROME)
    return datetime(local.year, local.month, local.day, tzinfo=ROME).timestamp() + 86400


def test_one_check_in_per_local_day_across_two_visits_and_a_new_one_the_next_day() -> None:
    config = _config(check_in={"enabled": True, "reward": "50 points."})
    starts = (T0, T0 + 3600, T0 + 86400)  # two visits today, one tomorrow
    messages = _run(config, _visits(*starts), [_customers(("c1", True, True))])
    check_ins = _of(messages, "check_in.v1")
    assert [c["local_date"] for c in check_ins] == ["2025-11-24", "2025-11-25"]
    visits = [v["visit_id"] for v in _of(messages, "visit.v1") if v["phase"] == "started"]
    assert [c["visit_id"] for c in check_ins] == [visits[0], visits[2]]
    # 17:00 local: the first is told; the next day's visit is also at 17:00.
    told = [n for n in _of(messages, "notification.v1") if n["template"] == "loyalty.check_in"]
    assert len(told) == 2
    assert "50 points." in told[0]["text"]


def test_local_midnight_starts_a_new_check_in_day_and_quiet_hours_hush_only_the_message() -> None:
    config = _config(check_in={"enabled": True})
    midnight = _local_midnight_after(T0)
    messages = _run(config, _visits(midnight - 200, midnight + 1), [_customers(("c1", True, True))])
    check_ins = _of(messages, "check_in.v1")
    assert [c["local_date"] for c in check_ins] == ["2025-11-24", "2025-11-25"]
    # 23:56 and 00:00 are quiet hours: the check-in is recorded, the customer is not disturbed.
    assert [n for n in _of(messages, "notification.v1") if n["template"] == "loyalty.check_in"] == []
    reasons = [s["reason"] for s in _of(messages, "suppressed.v1") if s["template"] == "loyalty.check_in"]
    assert reasons == ["quiet hours", "quiet hours"]


@pytest.mark.parametrize(
    ("stay_s", "ttl_s", "told", "reason"),
    [
        (150, 600, True, None),  # the visit outlasts the gap: told at the first tick it allows
        (60, 600, False, "minimum gap (held until the visit ended)"),
        (150, 90, False, "minimum gap (held until its TTL passed)"),
    ],
)
def test_a_check_in_after_the_arrival_message_waits_for_the_minimum_gap_while_the_visit_lasts(
    stay_s: int, ttl_s: float, told: bool, reason: str | None
) -> None:
    config = _config(check_in={"enabled": True, "notification_ttl_s": ttl_s})
    walk = _walk("c1", (("entrance", 10), ("shop", stay_s - 10)))
    messages = _run(config, walk, [_customers(("c1", True, True)), _order()])
    [arrival] = [n for n in _of(messages, "notification.v1") if n["template"] == "cnc.arrival.customer"]
    [check_in] = _of(messages, "check_in.v1")
    assert _ts(check_in) == _ts(arrival)  # HQ's loyalty system hears of it at once either way
    welcome = [n for n in _of(messages, "notification.v1") if n["template"] == "loyalty.check_in"]
    refused = [s["reason"] for s in _of(messages, "suppressed.v1") if s["template"] == "loyalty.check_in"]
    if told:
        [sent] = welcome
        assert 120 <= _ts(sent) - _ts(arrival) < 121.5  # the gap's second, on the tick
        assert _ts(sent, "expires") - _ts(check_in) == pytest.approx(ttl_s)  # the TTL runs from arrival
        assert refused == []
    else:
        assert welcome == []
        assert refused == [reason]  # said once, when it became final


def test_no_marketing_consent_means_no_check_in_no_coupon_no_shelf_push_and_each_refusal_is_logged(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge_agent.adapters.configfile import load_config
    from edge_agent.cli import main
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.trace import parse_trace_line
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database
    from edge_agent.tools.simclock import SimulatedRun

    config_file = tmp_path / "store.toml"
    config_file.write_text(
        f'[store]\nid = "s1"\ntimezone = "Europe/Rome"\n[storage]\npath = "{tmp_path / "agent.db"}"\n'
        "[presence]\nzone_min_s = 2\nabsence_timeout_s = 60\n[rules.check_in]\nenabled = true\n"
        "[rules.guards]\nmin_gap_s = 0\n"
        + "".join(f'[[zones]]\nid = "{z}"\n' for z in ZONES)
        + "".join(f'[[receivers]]\nid = "{z}"\nzone = "{z}"\n' for z in ZONES)
    )
    config = load_config(config_file)
    database = Database(config.storage.path)
    pipeline = Pipeline(config, database, EventIdFactory.seeded("no-marketing"))
    downlinks = [
        _customers(("c1", True, False)), _downlink("planogram", **PLANOGRAM),
        _downlink("lists", **SHOPPING_LIST), _downlink("offers", **OFFERS),
    ]  # fmt: skip
    for kind, payload in downlinks:
        assert pipeline.downlink(pipeline.topics.downlink(kind), payload, T0)
    run = SimulatedRun(pipeline)
    kind, receipt = _downlink("receipts", **RECEIPT)
    run.at(T0 + 30, lambda now: pipeline.downlink(pipeline.topics.downlink(kind), receipt, now))
    run.feed(parse_trace_line(line) for line in _walk("c1", (("entrance", 10), ("shop", 40))))
    run.finish()
    messages = pipeline.outbox.peek_payloads()
    database.close()
    assert _of(messages, "check_in.v1") == []
    assert [n for n in _of(messages, "notification.v1") if n["audience"] == "customer"] == []
    refused = {(s["template"], s["reason"]) for s in _of(messages, "suppressed.v1")}
    assert refused >= {
        ("loyalty.check_in", "no marketing consent"), ("shelf.location", "no marketing consent"),
        ("post_purchase.thanks", "no marketing consent"),
    }  # fmt: skip
    assert main(["journey", "c1", "--config", str(config_file), "--date", "2025-11-24"]) == 0
    shown = capsys.readouterr().out
    for template in ("loyalty.check_in", "shelf.location", "post_purchase.thanks"):
        assert f"{template} to customer not sent: no marketing consent" in shown, template
    assert "click_and_collect did not act: no order ready" in shown  # why nothing happened, too


# ---------------------------------------------------------------- coupons and outcomes


def _receipt(receipt_id: str, coupons: list[str]) -> tuple[str, bytes]:
    record = {**RECEIPT["receipts"][0], "receipt_id": receipt_id, "coupons": coupons}
    return _downlink("receipts", receipts=[record])


def test_an_issued_coupon_on_a_later_receipt_links_receipt_notification_and_visit() -> None:
    (k1, first), (k2, second) = _receipt("R-1", []), _receipt("R-2", ["GRIND10", "NOT-OURS"])
    walk = _walk("c1", (("entrance", 10), ("shop", 60), ("entrance", 10)))
    messages = _run(
        _config(), walk, [_customers(("c1", True, True)), _downlink("offers", **OFFERS)],
        timed=[(k1, first, "+40"), (k2, second, "+170")],  # the visit ended at about +140
    )  # fmt: skip
    [thanks] = [n for n in _of(messages, "notification.v1") if n["template"] == "post_purchase.thanks"]
    [redemption] = _of(messages, "redemption.v1")
    assert redemption["receipt_id"] == "R-2"
    assert redemption["coupon"] == "GRIND10"
    assert redemption["notification_event_id"] == thanks["event_id"]
    assert redemption["issued_visit_id"] == thanks["visit_id"]
    assert redemption["visit_id"] is None  # redeemed online, after the visit
    [outcome] = [o for o in _of(messages, "outcome.v1") if o["template"] == "post_purchase.thanks"]
    assert (outcome["result"], outcome["success"]) == ("redeemed", True)
    assert outcome["notification_event_id"] == thanks["event_id"]


def test_a_coupon_redeems_once_and_only_for_the_customer_it_was_given_to() -> None:
    (k1, first), (k2, again) = _receipt("R-1", []), _receipt("R-2", ["GRIND10"])
    other = {**RECEIPT["receipts"][0], "receipt_id": "R-3", "customer_id": "c2", "coupons": ["GRIND10"]}
    k3, by_other = _downlink("receipts", receipts=[other])
    walk = _walk("c1", (("entrance", 10), ("shop", 60), ("entrance", 10)))
    messages = _run(
        _config(), walk, [_customers(("c1", True, True), ("c2", True, True)), _downlink("offers", **OFFERS)],
        timed=[(k1, first, "+40"), (k3, by_other, "+150"), (k2, again, "+160"),
               (k2, again.replace(b"R-2", b"R-4"), "+170")],
    )  # fmt: skip
    assert [r["receipt_id"] for r in _of(messages, "redemption.v1")] == ["R-2"]


def test_a_coupon_given_again_before_it_was_redeemed_still_gives_the_first_thank_you_an_outcome() -> None:
    (k1, first), (k2, second) = _receipt("R-1", []), _receipt("R-2", [])
    walk = _walk("c1", (("entrance", 10), ("shop", 60))) + _walk(
        "c1", (("entrance", 10), ("shop", 60)), start=T0 + 3600
    )  # two visits with a purchase each: the offer's code is given twice
    messages = _run(
        _config(), walk, [_customers(("c1", True, True)), _downlink("offers", **OFFERS)],
        timed=[(k1, first, "+40"), (k2, second, "+3640")],
    )  # fmt: skip
    thanks = [n for n in _of(messages, "notification.v1") if n["template"] == "post_purchase.thanks"]
    assert [n["data"]["coupon"] for n in thanks] == ["GRIND10", "GRIND10"]
    [outcome] = _of(messages, "outcome.v1")  # the second's comes with its redemption or expiry
    assert outcome["notification_event_id"] == thanks[0]["event_id"]
    # The code now stands for the second thank-you: whether the first worked cannot be told.
    assert (outcome["result"], outcome["success"]) == ("superseded", None)


@pytest.mark.parametrize(
    ("walk", "window_s", "result"),
    [
        ((("entrance", 10), ("shop", 30)), 900, "entered_zone"),
        ((("entrance", 40),), 900, "zone_not_visited"),  # the visit ends first
        ((("entrance", 40), ("shop", 30)), 15, "zone_not_visited"),  # the window ends first
    ],
)
def test_a_shelf_push_worked_only_if_the_shopper_entered_the_items_zone_within_the_window(
    walk: tuple[tuple[str, int], ...], window_s: float, result: str
) -> None:
    config = _config(shelf_location={"outcome_window_s": window_s})
    one_item = {"lists": [{"customer_id": "c1", "version": 1, "items": [{"sku": "SKU-1", "source": "cart"}]}]}
    messages = _run(
        config, _walk("c1", walk),
        [_customers(("c1", True, True)), _downlink("planogram", **PLANOGRAM), _downlink("lists", **one_item)],
    )  # fmt: skip
    [push] = [n for n in _of(messages, "notification.v1") if n["template"] == "shelf.location"]
    [outcome] = [o for o in _of(messages, "outcome.v1") if o["template"] == "shelf.location"]
    assert outcome["result"] == result
    assert outcome["notification_event_id"] == push["event_id"]
    if window_s == 15:
        assert _ts(outcome) == pytest.approx(_ts(push) + 15, abs=1.5)


def test_every_customer_notification_gets_exactly_one_outcome() -> None:
    config = _config(check_in={"enabled": True}, guards={"min_gap_s": 0, "max_per_visit": 10})
    kind, receipt = _downlink("receipts", **RECEIPT)
    messages = _run(
        config, _walk("c1", (("entrance", 10), ("shop", 40), ("counter", 30))),
        [_customers(("c1", True, True)), _order(), _downlink("planogram", **PLANOGRAM),
         _downlink("lists", **SHOPPING_LIST)],
        timed=[(kind, receipt, "+30")],
    )  # fmt: skip
    customer = [n["event_id"] for n in _of(messages, "notification.v1") if n["audience"] == "customer"]
    assert len(customer) >= 4  # arrival, shelf, check-in, thanks
    outcomes = [o["notification_event_id"] for o in _of(messages, "outcome.v1")]
    assert sorted(outcomes) == sorted(customer)


# ---------------------------------------------------------------- why nothing happened


def _core_run(config: Any, trace: list[str], downlinks: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """The store core's messages, the journey log's own lines included (replay shows only what
    is published), ticking every second as the daemon does."""
    from edge_agent.core.downlinks import parse_downlink
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.store import StoreCore
    from edge_agent.core.trace import parse_trace_line

    core = StoreCore(config, EventIdFactory.seeded("core-run"))
    out = []
    for kind, payload in downlinks:
        out += core.apply(parse_downlink(kind, payload), T0)
    ticked = T0
    for line in trace:
        sighting = parse_trace_line(line)
        assert sighting is not None
        while ticked + 1 <= sighting.ts:
            ticked += 1
            out += core.tick(ticked)
        out += core.observe(sighting)
    for _ in range(int(config.presence.absence_timeout_s) + 2):
        ticked += 1
        out += core.tick(ticked)
    return [json.loads(m.to_json()) for m in out]


def test_rules_that_did_not_act_say_why_once_per_visit_in_the_journey_log_only() -> None:
    only_out_of_stock = {
        "lists": [{"customer_id": "c1", "version": 1, "items": [{"sku": "SKU-2", "source": "cart"}]}]
    }
    walk = (("entrance", 10), ("shop", 30))
    cases = [
        ([], {("click_and_collect", "no order ready"), ("shelf_location", "no list")}),
        ([_downlink("planogram", **PLANOGRAM), _downlink("lists", **only_out_of_stock)],
         {("click_and_collect", "no order ready"), ("shelf_location", "out of stock: Milk frother")}),
    ]  # fmt: skip
    for downlinks, expected in cases:
        messages = _core_run(_config(), _walk("c1", walk), [_customers(("c1", True, True)), *downlinks])
        assert {(s["rule"], s["reason"]) for s in _of(messages, "skipped.v1")} == expected
        published = _run(_config(), _walk("c1", walk), [_customers(("c1", True, True)), *downlinks])
        assert _of(published, "skipped.v1") == []  # the store's log, not HQ's feed


def test_a_zone_triggered_push_says_when_nothing_listed_is_shelved_in_the_zone() -> None:
    config = _config(shelf_location={"trigger": "zone"})
    one_item = {"lists": [{"customer_id": "c1", "version": 1, "items": [{"sku": "SKU-3", "source": "cart"}]}]}
    messages = _core_run(
        config, _walk("c1", (("entrance", 10), ("shop", 30), ("counter", 20))),
        [_customers(("c1", True, True)), _downlink("planogram", **PLANOGRAM), _downlink("lists", **one_item)],
    )  # fmt: skip
    reasons = [s["reason"] for s in _of(messages, "skipped.v1") if s["rule"] == "shelf_location"]
    assert reasons == ["no listed item shelved in entrance", "no listed item shelved in shop"]
    assert [
        n["data"]["skus"] for n in _of(messages, "notification.v1") if n["template"] == "shelf.location"
    ] == ["SKU-3"]


def test_a_check_in_coupon_redeemed_names_its_notification_and_one_never_redeemed_expires() -> None:
    from edge_agent.core.downlinks import parse_downlink
    from edge_agent.core.events import NotificationMessage, OutcomeMessage, RedemptionMessage
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.store import StoreCore
    from tests.helpers import app_sighting

    config = _config(check_in={"enabled": True, "coupon_prefix": "CHK", "coupon_valid_s": 3600})
    core = StoreCore(config, EventIdFactory.seeded("check-in-coupon"))
    customers = _customers(("c1", True, True), ("c2", True, True))[1]
    core.apply(parse_downlink("customers", customers), T0)
    out = []
    for i, who in enumerate(("c1", "c2")):
        out += core.observe(app_sighting(who, T0 + i, "entrance", -55))
    told = {m.customer_id: m for m in out if isinstance(m, NotificationMessage)}
    code = told["c1"].data["coupon"]
    assert code.startswith("CHK-")
    assert code in told["c1"].text
    assert told["c2"].data["coupon"] != code  # one code per notification
    receipt = {**RECEIPT["receipts"][0], "receipt_id": "R-9", "coupons": [code]}
    body = json.dumps({"schema": "receipts.v1", "message_id": "r", "receipts": [receipt]}).encode()
    out = core.apply(parse_downlink("receipts", body), T0 + 10)
    [redemption] = [m for m in out if isinstance(m, RedemptionMessage)]
    assert redemption.notification_event_id == told["c1"].event_id
    assert redemption.template == "loyalty.check_in"
    outcomes = [m for m in core.tick(T0 + 3601) if isinstance(m, OutcomeMessage)]
    assert [(o.customer_id, o.result) for o in outcomes if o.template == "loyalty.check_in"] == [
        ("c2", "expired")
    ]


def test_watched_zones_must_exist_and_the_queue_must_re_arm_below_its_mark() -> None:
    from edge_agent.core.errors import ConfigError

    with pytest.raises(ConfigError) as problem:
        _config(assist={"zones": ["garden"]}, queue={"zones": ["tills"], "above": 3, "clear_at": 3})
    text = str(problem.value)
    assert "rules.assist.zones[0]" in text
    assert "rules.queue.zones[0]" in text
    assert "clear_at (3) must be below above (3)" in text


def test_a_restart_does_not_check_a_customer_in_twice_the_same_day(tmp_path: Any) -> None:
    from edge_agent.core.ids import EventIdFactory
    from edge_agent.core.trace import parse_trace_line
    from edge_agent.daemon.pipeline import Pipeline
    from edge_agent.storage.database import Database
    from edge_agent.tools.simclock import SimulatedRun

    config = _config(check_in={"enabled": True}).model_copy(
        update={"storage": _config().storage.model_copy(update={"path": tmp_path / "agent.db"})}
    )
    check_ins: dict[str, str] = {}  # event id -> local date (the outbox keeps boot 0's unsent)
    for boot, start in enumerate((T0, T0 + 3600)):  # the agent restarts between two visits
        database = Database(config.storage.path)
        pipeline = Pipeline(config, database, EventIdFactory.seeded(f"boot-{boot}"))
        if boot == 0:
            kind, payload = _customers(("c1", True, True))
            assert pipeline.downlink(pipeline.topics.downlink(kind), payload, start)
        run = SimulatedRun(pipeline)
        run.feed(parse_trace_line(line) for line in _visits(start))
        run.finish()
        check_ins.update(
            (c["event_id"], c["local_date"]) for c in _of(pipeline.outbox.peek_payloads(), "check_in.v1")
        )
        database.close()
    assert list(check_ins.values()) == ["2025-11-24"]

"""Property test of the journey rules: whatever sightings, downlinks and clock advances arrive,
no rule raises, no customer without marketing consent hears a marketing message (nor checks in),
and no customer notification breaks quiet hours, the caps or the minimum gap."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.core.downlinks import parse_downlink
from edge_agent.core.events import CheckInMessage, Message, NotificationMessage
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.store import StoreCore
from tests.helpers import KEYS, app_sighting, phone_sighting
from tests.test_journey import ZONES
from tests.test_journey import _config as journey_config

T0 = 1_764_000_000.0  # 17:00 in Rome
CUSTOMERS = ("c1", "c2", "c3")
MARKETING = {"shelf.location", "post_purchase.thanks", "loyalty.check_in"}
GUARDS = {"max_per_visit": 2, "max_per_day": 3, "min_gap_s": 30, "quiet_hours_start": "21:00",
          "quiet_hours_end": "08:00"}  # fmt: skip
CONFIG = journey_config(
    presence={"absence_timeout_s": 30, "zone_min_s": 1},
    footfall={"interval_s": 300},
    counter_wait={"after_s": 5, "repeat_s": 5},
    assist={"zones": ["shop"], "after_s": 5},
    queue={"zones": ["counter"], "above": 2, "clear_at": 0, "for_s": 3},
    check_in={"enabled": True, "coupon_prefix": "CHK", "coupon_valid_s": 600},
    shelf_location={"outcome_window_s": 60},
    guards=GUARDS,
)


def _downlink(kind: str, **body: Any) -> Any:
    return parse_downlink(kind, json.dumps({"schema": f"{kind}.v1", "message_id": "m", **body}).encode())


customer = st.sampled_from(CUSTOMERS)
# A stay: a shopper heard once a second in one zone (loudest there) for a few seconds; a crowd:
# that many anonymous phones likewise. The clock ticks every second as the daemon's does.
sighting = st.tuples(
    st.just("sight"), customer, st.sampled_from(ZONES), st.integers(-95, -40), st.integers(1, 40)
)
anonymous = st.tuples(
    st.just("anon"), st.integers(1, 5), st.sampled_from(ZONES), st.integers(-95, -40), st.integers(1, 20)
)
advance = st.tuples(st.just("wait"), st.floats(0.2, 40000.0))
order = st.tuples(
    st.just("order"), customer, st.sampled_from(["ready", "collected", "cancelled"]), st.integers(0, 3)
)
shopping_list = st.tuples(
    st.just("list"), customer, st.lists(st.sampled_from(["S1", "S2", "S3"]), max_size=3)
)
receipt = st.tuples(
    st.just("receipt"), customer, st.lists(st.sampled_from(["SAVE5", "CHK-0", "issued", "X"]), max_size=3)
)
steps = st.lists(
    st.one_of(sighting, sighting, sighting, anonymous, advance, order, shopping_list, receipt), max_size=120
)
consents = st.fixed_dictionaries({c: st.tuples(st.booleans(), st.booleans()) for c in CUSTOMERS})


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(consent=consents, plan=steps)
def test_random_journeys_never_raise_never_market_without_consent_and_never_exceed_the_caps(
    consent: dict[str, tuple[bool, bool]], plan: list[tuple[Any, ...]]
) -> None:
    core = StoreCore(CONFIG, EventIdFactory.seeded("property"))
    out: list[Message] = []
    out += core.apply(
        _downlink(
            "customers",
            upsert=[{"customer_id": c, "identity_key": KEYS[c].hex(),
                     "consent": {"service": s, "marketing": m}}
                    for c, (s, m) in consent.items()],
        ), T0,
    )  # fmt: skip
    out += core.apply(
        _downlink("planogram", full=True, items=[
            {"sku": "S1", "name": "Beans", "zone": "shop"}, {"sku": "S2", "name": "Mugs", "zone": "counter"},
            {"sku": "S3", "name": "Frother", "zone": "shop", "in_stock": False},
        ]), T0,
    )  # fmt: skip
    out += core.apply(
        _downlink("offers", offers=[{"offer_id": "O", "match_sku": "S1", "coupon": "SAVE5", "product": "x",
                                     "valid_from": "2025-01-01T00:00:00Z",
                                     "valid_until": "2027-01-01T00:00:00Z"}]),
        T0,
    )  # fmt: skip
    # Every customer starts with a ready order and a list, so the rules have something to do.
    ready = [
        {"order_id": f"O-{c}", "customer_id": c, "status": "ready", "pickup_point": "B"} for c in CUSTOMERS
    ]
    out += core.apply(_downlink("orders", orders=ready), T0)
    lists = [{"customer_id": c, "version": 0, "items": [{"sku": "S1", "source": "cart"}]} for c in CUSTOMERS]
    out += core.apply(_downlink("lists", lists=lists), T0)
    now, versions = T0, defaultdict(int)
    for step in plan:
        if step[0] == "sight":
            _, who, zone, rssi, seconds = step
            for _ in range(seconds):
                for receiver in ZONES:
                    out += core.observe(
                        app_sighting(who, now, receiver, rssi if receiver == zone else rssi - 20)
                    )
                now += 1.0
                out += core.tick(now)
        elif step[0] == "anon":
            _, n, zone, rssi, seconds = step
            for _ in range(seconds):
                for i in range(n):
                    out += core.observe(phone_sighting(f"6A:00:00:00:00:{i:02X}", now, zone, rssi))
                now += 1.0
                out += core.tick(now)
        elif step[0] == "wait":
            target = now + step[1]
            while now < target:
                now = min(target, now + (1.0 if target - now < 120 else 60.0))
                out += core.tick(now)
        elif step[0] == "order":
            _, who, status, oid = step
            versions[oid] += 1
            record = {"order_id": f"O{oid}", "customer_id": who, "status": status, "version": versions[oid],
                      "pickup_point": "B"}  # fmt: skip
            out += core.apply(_downlink("orders", orders=[record]), now)
        elif step[0] == "list":
            _, who, skus = step
            versions[who] += 1
            items = [{"sku": s, "source": "cart"} for s in skus]
            out += core.apply(
                _downlink("lists", lists=[{"customer_id": who, "version": versions[who], "items": items}]),
                now,
            )
        else:
            _, who, codes = step
            versions["receipt"] += 1
            record = {"receipt_id": f"R{versions['receipt']}", "customer_id": who, "total": 1.0,
                      "items": [{"sku": "S1"}], "coupons": codes}  # fmt: skip
            out += core.apply(_downlink("receipts", receipts=[record]), now)
    out += core.tick(now + 3600)
    _check(out, consent)


def _check(out: list[Message], consent: dict[str, tuple[bool, bool]]) -> None:
    tz = ZoneInfo("Europe/Rome")
    told: defaultdict[str, list[NotificationMessage]] = defaultdict(list)
    for message in out:
        if isinstance(message, CheckInMessage):
            assert consent[message.customer_id][1], "a check-in without marketing consent"
        if not isinstance(message, NotificationMessage):
            continue
        service, marketing = consent[message.customer_id]
        assert service if message.template.startswith(("cnc.", "staff.")) else marketing, message.template
        if message.audience == "customer":
            told[message.customer_id].append(message)
    for notes in told.values():
        per_visit: defaultdict[str, int] = defaultdict(int)
        per_day: defaultdict[object, int] = defaultdict(int)
        last = None
        for note in notes:
            local = note.ts.astimezone(tz)
            assert time(8) <= local.time() < time(21), "a customer message in quiet hours"
            per_visit[note.visit_id] += 1
            per_day[local.date()] += 1
            assert per_visit[note.visit_id] <= GUARDS["max_per_visit"]
            assert per_day[local.date()] <= GUARDS["max_per_day"]
            ts = note.ts.timestamp()
            assert last is None or ts - last >= GUARDS["min_gap_s"]
            last = ts

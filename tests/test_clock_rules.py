"""Every rule that reads the local day or the time of day, across a wall-clock step forward
(NTP steps a box that booted 3 h behind) and back (the clock steps back 1 h).

The agent follows a step (``core.wallclock``) and re-dates what it holds (``StoreCore.shift``),
so each rule behaves after the step as on a clock that had been right all along, and nothing
counted before the step is lost or counted twice. One test per rule and direction; a rule that
reads the local day joins ``LOCAL_DAY_RULES`` with its own pair of tests here.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge_agent.core.const import QUEUE_HEARD_S
from edge_agent.core.events import Envelopes
from edge_agent.core.footfall import Footfall
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.coupons import IssuedCoupon, IssuedCoupons
from edge_agent.core.journey.durable import Journal
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.journey.loyalty import CheckIns
from edge_agent.core.journey.outcomes import Outcomes
from edge_agent.core.journey.queue import QueueWatch
from edge_agent.core.registry import Customer
from edge_agent.core.repeats import REPEAT_INTERVAL_S, RepeatLimiter
from edge_agent.core.settings import GuardSettings, QueueSettings
from edge_agent.core.store import StoreCore
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.daemon.timekeeper import Timekeeper
from edge_agent.storage.database import Database
from tests.conftest import make_config
from tests.fakes import ManualClock
from tests.helpers import app_sighting, customers_downlink, orders_downlink, phone_sighting

ROME = ZoneInfo("Europe/Rome")
FORWARD, BACK = 3 * 3600.0, -3600.0
STEPS = pytest.mark.parametrize("step", [FORWARD, BACK], ids=["forward 3 h", "back 1 h"])
# What reads the store's local day or time of day, and the tests here that cover it; the rules
# that time a wait (the counter wait's reminders) are here too.
LOCAL_DAY_RULES = (
    "quiet hours",
    "cap per local day",
    "minimum gap",
    "footfall intervals",
    "check-in per day",
)
CUSTOMER = Customer("c1", bytes(16), consent_service=True, consent_marketing=True)


def _at(text: str) -> float:
    """A local time in Rome as Unix seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=ROME).timestamp()


def _guard(**settings: object) -> NotificationGuard:
    return NotificationGuard(GuardSettings(**settings), "Europe/Rome")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- caps


@STEPS
def test_the_daily_cap_holds_across_a_step_over_midnight(step: float) -> None:
    """Two notifications, then the clock steps over midnight: they were sent on the day the
    corrected clock says, so that day's cap is still reached; it resets at the real next day."""
    guard = _guard(
        max_per_day=2, min_gap_s=0, max_per_visit=50, quiet_hours_start="00:00", quiet_hours_end="00:00"
    )
    # Forward: the box says 22:30 on the 24th while it is 01:30 on the 25th; back: a right
    # clock at 00:30 on the 25th steps to 23:30 on the 24th.
    now = _at("2025-11-24 22:30") if step == FORWARD else _at("2025-11-25 00:30")
    for _ in range(2):
        guard.sent("c1", "v1", now)
        now += 60
    assert guard.refusal(CUSTOMER, "marketing", "v1", now) == "daily cap reached"
    guard.shift(step)
    now += step
    assert guard.refusal(CUSTOMER, "marketing", "v1", now) == "daily cap reached"
    next_day = _at("2025-11-26 00:01") if step == FORWARD else _at("2025-11-25 00:01")
    assert guard.refusal(CUSTOMER, "marketing", "v1", next_day) is None


@STEPS
def test_the_minimum_gap_is_measured_across_a_step_as_it_really_passed(step: float) -> None:
    guard = _guard(min_gap_s=120)
    now = _at("2025-11-24 12:00")
    guard.sent("c1", "v1", now)
    guard.shift(step)
    now += step
    assert guard.refusal(CUSTOMER, "marketing", "v2", now + 60) == "minimum gap"
    assert guard.refusal(CUSTOMER, "marketing", "v2", now + 121) is None


# ---------------------------------------------------------------------------------------------- quiet hours


def _store(
    tmp_path: Path, manual: ManualClock, rules: dict[str, Any] | None = None
) -> tuple[Pipeline, Timekeeper]:
    # Windows of 2^15 s, so the phone resolves whatever the box clock says: only the step counts.
    config = make_config(
        tmp_path, clock={"sync_source": "none"}, identity={"rotation_exponent": 15},
        presence={"absence_timeout_s": 60}, rules=rules or {},
    )  # fmt: skip
    timekeeper = Timekeeper(config.clock, manual.clock)
    database = Database(config.storage.path)
    return Pipeline(config, database, EventIdFactory.seeded("rules"), clock=timekeeper.clock), timekeeper


def _run(
    pipeline: Pipeline, timekeeper: Timekeeper, manual: ManualClock, seconds: int, error: float | None,
    receiver: str = "entrance",
) -> None:  # fmt: skip
    """``seconds`` of the customer heard every 2 s at ``receiver`` (their phone on true time: box
    + ``error``; None: not in the store), with the daemon's tick every second."""
    for second in range(seconds):
        if second % 2 == 0 and error is not None:
            sighting = app_sighting("c1", manual.wall + error, receiver, k=15)
            pipeline.process([replace(sighting, ts=timekeeper.now())])
        step = timekeeper.check(pipeline.core.token_clock)
        if step:
            pipeline.shift(step)
        pipeline.tick(timekeeper.now())
        manual.advance(1)


def _customer_notes(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(schema, template or reason) of what the customer was sent or spared, in order."""
    out = []
    for p in pipeline.outbox.peek_payloads():
        if p["schema"] == "notification.v1" and p["audience"] == "customer":
            out.append(("sent", p["template"]))
        elif p["schema"] == "suppressed.v1" and p["audience"] == "customer":
            out.append(("suppressed", p["reason"]))
    return out


@STEPS
def test_quiet_hours_follow_the_local_time_of_the_clock_after_the_step(step: float, tmp_path: Path) -> None:
    """Quiet hours 21:00-08:00. Forward: the box boots at 06:00 local while it is 09:00; a shopper
    arriving for an order is not notified (the box thinks it is night), NTP steps the clock and
    the next arrival is. Back: a right clock at 21:30 (quiet) steps back to 20:30: arrivals are
    notified again, as on any clock that says 20:30 (and HQ sees clock_trusted false)."""
    start = _at("2025-11-24 06:00") if step == FORWARD else _at("2025-11-24 21:30")
    manual = ManualClock(wall=start, monotonic=1000.0)
    pipeline, timekeeper = _store(tmp_path, manual)
    error = FORWARD if step == FORWARD else 0.0
    pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), timekeeper.now()
    )
    pipeline.downlink(
        "retail/v1/stores/s1/in/orders", orders_downlink(("O-1", "c1", "ready")), timekeeper.now()
    )
    _run(pipeline, timekeeper, manual, 30, error)  # first visit, before the step
    for _ in range(90):  # the visit ends (absence 60 s)
        pipeline.tick(timekeeper.now())
        manual.advance(1)
    manual.wall += step
    error -= step
    _run(pipeline, timekeeper, manual, 2, None)  # the next two ticks see the step and confirm it
    pipeline.downlink(
        "retail/v1/stores/s1/in/orders", orders_downlink(("O-2", "c1", "ready"), message_id="ord-2"),
        timekeeper.now(),
    )  # fmt: skip
    _run(pipeline, timekeeper, manual, 30, error)  # second visit, after the step
    assert _customer_notes(pipeline) == [("suppressed", "quiet hours"), ("sent", "cnc.arrival.customer")]
    visits = [p for p in pipeline.outbox.peek_payloads() if p["schema"] == "visit.v1"]
    assert [v["phase"] for v in visits] == ["started", "ended", "started"]  # two visits, no phantom


# ---------------------------------------------------------------------------------------------- footfall


@STEPS
def test_footfall_counts_each_entry_once_across_a_step_and_realigns_on_the_clock(step: float) -> None:
    """15-minute intervals; 3 entries before the step and 2 after, mid-interval: the interval
    across the step carries all five, ends at the next boundary of the corrected clock, and the
    intervals after it are whole quarter hours again."""
    counters: Counter[str] = Counter()
    footfall = Footfall(900.0, frozenset(), Envelopes("s1", EventIdFactory.seeded("ff")), counters)
    now = _at("2025-11-24 10:05")
    footfall.start(now)
    for i in range(3):
        footfall.arrived(f"p{i}", -60, "entrance", now + i, recognised=False)
    footfall.shift(step)
    now += step + 60
    for i in range(2):
        footfall.arrived(f"q{i}", -60, "entrance", now + i, recognised=False)
    messages = footfall.close(now + 3600, lambda t: 0)
    assert sum(m.entries for m in messages) == 5
    assert messages[0].entries == 5
    assert messages[0].interval_start.timestamp() == _at("2025-11-24 10:00") + step
    ends = [m.interval_end.timestamp() for m in messages]
    assert all(end % 900 == 0 for end in ends), ends
    assert all(b - a == 900 for a, b in itertools.pairwise(ends))


# ---------------------------------------------------------------------------------------------- check-in


def _payloads(pipeline: Pipeline, schema: str) -> list[dict[str, Any]]:
    return [p for p in pipeline.outbox.peek_payloads() if p["schema"] == schema]


@STEPS
@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted after the step"])
def test_one_check_in_per_local_day_across_a_step_over_midnight(
    step: float, restart: bool, tmp_path: Path
) -> None:
    """Two visits on one real local day, with a step over midnight between them. Forward: the box
    says 22:30 on the 24th while it is 01:30 on the 25th; the shopper checks in, NTP steps the
    clock, they come back at 01:3x: the first check-in was on the 25th, so no second one. Back: a
    right clock checks them in at 00:30 on the 25th and steps back to 23:30 on the 24th: the
    check-in is re-dated with it, so the visit at "23:3x" is the same day, no second one. So too
    when the agent restarts after the step: the check-in it reads back is on the corrected clock."""
    start = _at("2025-11-24 22:30") if step == FORWARD else _at("2025-11-25 00:30")
    manual = ManualClock(wall=start, monotonic=1000.0)
    pipeline, timekeeper = _store(tmp_path, manual, {"check_in": {"enabled": True}})
    error = FORWARD if step == FORWARD else 0.0
    pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), timekeeper.now()
    )
    _run(pipeline, timekeeper, manual, 30, error)  # first visit: the check-in
    for _ in range(90):  # the visit ends (absence 60 s)
        pipeline.tick(timekeeper.now())
        manual.advance(1)
    manual.wall += step
    error -= step
    _run(pipeline, timekeeper, manual, 2, None)  # the next two ticks see the step and confirm it
    if restart:
        pipeline.commit()
        pipeline.database.close()
        database = Database(pipeline.config.storage.path)
        pipeline = Pipeline(
            pipeline.config, database, EventIdFactory.seeded("boot-2"), clock=timekeeper.clock
        )
    _run(pipeline, timekeeper, manual, 30, error)  # second visit, after the step
    visits = _payloads(pipeline, "visit.v1")
    assert [v["phase"] for v in visits] == ["started", "ended", "started"]
    check_ins = _payloads(pipeline, "check_in.v1")
    assert [c["visit_id"] for c in check_ins] == [visits[0]["visit_id"]]  # one, on the first visit


@STEPS
def test_a_check_in_before_a_step_counts_for_the_corrected_day_and_the_next_real_day_is_new(
    step: float,
) -> None:
    check_ins = CheckIns("Europe/Rome")
    before = _at("2025-11-24 22:30") if step == FORWARD else _at("2025-11-25 00:30")
    check_ins.record("c1", before)
    check_ins.shift(step)
    after = before + step + 300
    assert check_ins.local_date(after) == ("2025-11-25" if step == FORWARD else "2025-11-24")
    assert check_ins.done_on("c1", check_ins.local_date(after))
    next_day = _at("2025-11-26 00:01") if step == FORWARD else _at("2025-11-25 00:01")
    assert not check_ins.done_on("c1", check_ins.local_date(next_day))


# ---------------------------------------------------------------------------------------------- counter wait


@STEPS
def test_the_counter_wait_reminder_neither_fires_early_nor_late_across_a_step(
    step: float, tmp_path: Path
) -> None:
    """A shopper with a ready order waits at the counter; staff hear of it after 60 s in the zone
    and again every 120 s. The clock steps 30 s after the first reminder: the second still comes
    120 s (on the monotonic clock) after the first, not at the step (forward) nor an hour later
    (back)."""
    manual = ManualClock(wall=_at("2025-11-24 12:00"), monotonic=1000.0)
    rules = {
        "counter_wait": {"after_s": 60, "repeat_s": 120},
        "click_and_collect": {"pickup_zone": "counter"},
    }
    pipeline, timekeeper = _store(tmp_path, manual, rules)
    error = FORWARD if step == FORWARD else 0.0
    pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), timekeeper.now()
    )
    pipeline.downlink(
        "retail/v1/stores/s1/in/orders", orders_downlink(("O-1", "c1", "ready")), timekeeper.now()
    )
    reminders: list[float] = []  # the monotonic second each counter_wait appeared

    def wait_at_counter(seconds: int) -> None:
        for _ in range(seconds):
            _run(pipeline, timekeeper, manual, 1, error, receiver="counter")
            waits = [p for p in _payloads(pipeline, "order.v1") if p["phase"] == "counter_wait"]
            if len(waits) > len(reminders):
                reminders.append(manual.monotonic)

    wait_at_counter(2)  # whether the visit starts on an even second
    while not reminders and manual.monotonic < 1200:
        wait_at_counter(1)
    assert reminders, "no first reminder"
    wait_at_counter(30)
    manual.wall += step
    error -= step
    wait_at_counter(200)
    assert len(reminders) == 2, reminders
    assert 118 <= reminders[1] - reminders[0] <= 122
    visits = _payloads(pipeline, "visit.v1")
    assert [v["phase"] for v in visits] == ["started"]  # one visit throughout, no phantom


@STEPS
def test_a_lingering_shopper_is_named_to_staff_once_per_stay_across_a_step(
    step: float, tmp_path: Path
) -> None:
    """Staff hear of a shopper lingering 60 s in a department once per stay: a step during the
    stay re-dates it, and the stay already named is not named again as if it were a new one."""
    manual = ManualClock(wall=_at("2025-11-24 12:00"), monotonic=1000.0)
    pipeline, timekeeper = _store(tmp_path, manual, {"assist": {"zones": ["counter"], "after_s": 60}})
    error = FORWARD if step == FORWARD else 0.0
    pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), timekeeper.now()
    )
    _run(pipeline, timekeeper, manual, 90, error, receiver="counter")

    def named() -> int:
        notes = _payloads(pipeline, "notification.v1")
        return sum(1 for n in notes if n["template"] == "staff.assist")

    assert named() == 1
    manual.wall += step
    error -= step
    _run(pipeline, timekeeper, manual, 120, error, receiver="counter")
    assert named() == 1
    assert [v["phase"] for v in _payloads(pipeline, "visit.v1")] == ["started"]


# ---------------------------------------------------------------------------------------------- promises


@STEPS
def test_an_issued_coupon_expires_at_its_real_validity_and_its_kept_row_is_re_dated(step: float) -> None:
    journal = Journal()
    coupons = IssuedCoupons(journal)
    now = _at("2025-11-24 12:00")
    coupons.issue(IssuedCoupon("c1", "CHK-1", "n1", "loyalty.check_in", "v1", now, now + 600))
    journal.drain()
    coupons.shift(step)
    assert coupons.expired(now + step + 599) == []
    assert coupons.redeem("c1", "CHK-1", now + step + 300 - 1) is not None  # still valid
    coupons.issue(IssuedCoupon("c1", "CHK-2", "n2", "loyalty.check_in", "v1", now, now + 600))
    journal.drain()
    coupons.shift(step)
    (kept,) = journal.drain()  # the row a restart reads back carries the new times
    assert kept.record is not None
    assert (kept.record["issued_at"], kept.record["valid_until"]) == (now + step, now + step + 600)
    assert [c.code for c in coupons.expired(now + step + 600)] == ["CHK-2"]


@STEPS
def test_a_pending_outcome_is_decided_at_its_real_deadline_and_its_kept_row_is_re_dated(step: float) -> None:
    journal = Journal()
    outcomes = Outcomes(Envelopes("s1", EventIdFactory.seeded("outcomes")), journal)
    now = _at("2025-11-24 12:00")
    record = {
        "kind": "zone", "event_id": "n1", "customer_id": "c1", "visit_id": "v1",
        "template": "shelf.location", "sent_at": now, "deadline": now + 900, "zones": ["dairy"],
    }  # fmt: skip
    outcomes.restore([record], open_visits={"v1"})
    outcomes.shift(step)
    (kept,) = journal.drain()
    assert kept.record is not None
    assert (kept.record["sent_at"], kept.record["deadline"]) == (now + step, now + step + 900)
    assert outcomes.expire(now + step + 899) == []
    (decided,) = outcomes.expire(now + step + 901)
    assert decided.after_s == 900  # the window it really had


@STEPS
def test_a_queue_alerts_after_for_s_of_real_time_across_a_step(step: float) -> None:
    settings = QueueSettings(zones=["counter"], above=4, clear_at=1, for_s=60)
    queue = QueueWatch()
    now = _at("2025-11-24 12:00")
    for second in range(40):
        assert queue.update(settings, {"counter": 5}, now + second) == []
    queue.shift(step)
    now += step
    alerts = [queue.update(settings, {"counter": 5}, now + second) for second in range(40, 80)]
    assert [second for second, found in zip(range(40, 80), alerts, strict=True) if found] == [60]


@STEPS
def test_an_anonymous_shopper_counts_in_the_zone_they_move_to_after_a_step(
    step: float, tmp_path: Path
) -> None:
    """The queue counts anonymous shoppers in the zone of the receiver hearing them loudest,
    held for a moment; after a step back that moment must not last an hour."""
    core = StoreCore(make_config(tmp_path), EventIdFactory.seeded("zones"))
    now = _at("2025-11-24 12:00")
    for second in range(10):
        core.observe(phone_sighting("6B:00:00:00:00:01", now + second, "entrance", rssi=-50))
    core.shift(step)
    now += step + 10
    for second in range(10):
        core.observe(phone_sighting("6B:00:00:00:00:01", now + second, "counter", rssi=-75))
    assert core.zone_occupancy(now + 10, QUEUE_HEARD_S) == {"counter": 1}


@STEPS
def test_a_repeated_warning_comes_back_after_its_interval_across_a_step(step: float) -> None:
    """A fault that persists is warned every few minutes: a step back must not hold the reminder
    for the step's length on top (an hour of silence in the journal), nor a step forward make
    every repeat a warning."""
    limiter = RepeatLimiter(REPEAT_INTERVAL_S)
    now = _at("2026-11-24T10:00:00")
    assert limiter.admit("node n1", now) == 0
    now += 60 + step  # the step, a minute after the first warning
    logged = [n for n in range(1, 600) if limiter.admit("node n1", now + n) is not None]
    assert len(logged) <= 2  # at most the one the step ends early, and the next interval's
    assert logged
    assert logged[-1] <= REPEAT_INTERVAL_S + 1


# ---------------------------------------------------------------------------------------------- the list


def test_every_local_day_rule_has_its_tests() -> None:
    assert set(LOCAL_DAY_RULES) == {
        "quiet hours", "cap per local day", "minimum gap", "footfall intervals", "check-in per day"
    }  # fmt: skip

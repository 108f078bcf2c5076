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
from zoneinfo import ZoneInfo

import pytest

from edge_agent.core.events import Envelopes
from edge_agent.core.footfall import Footfall
from edge_agent.core.identity import Customer
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.settings import GuardSettings, RulesSettings
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.daemon.timekeeper import Timekeeper
from edge_agent.storage.database import Database
from tests.conftest import make_config
from tests.fakes import ManualClock
from tests.helpers import app_sighting, customers_downlink, orders_downlink

ROME = ZoneInfo("Europe/Rome")
FORWARD, BACK = 3 * 3600.0, -3600.0
STEPS = pytest.mark.parametrize("step", [FORWARD, BACK], ids=["forward 3 h", "back 1 h"])
# What reads the store's local day or time of day, and the tests here that cover it. Check-in per
# day (being built for issue 15) joins with its own pair when it lands: test_check_in_per_day.
LOCAL_DAY_RULES = ("quiet hours", "cap per local day", "minimum gap", "footfall intervals")
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


def _store(tmp_path: Path, manual: ManualClock) -> tuple[Pipeline, Timekeeper]:
    # Windows of 2^15 s, so the phone resolves whatever the box clock says: only the step counts.
    config = make_config(
        tmp_path, clock={"sync_source": "none"}, identity={"rotation_exponent": 15},
        presence={"absence_timeout_s": 60},
    )  # fmt: skip
    timekeeper = Timekeeper(config.clock, manual.clock)
    database = Database(config.storage.path)
    return Pipeline(config, database, EventIdFactory.seeded("rules"), clock=timekeeper.clock), timekeeper


def _run(
    pipeline: Pipeline, timekeeper: Timekeeper, manual: ManualClock, seconds: int, error: float | None
) -> None:
    """``seconds`` of the customer heard every 2 s (their phone on true time: box + ``error``;
    None: not in the store), with the daemon's tick every second."""
    for second in range(seconds):
        if second % 2 == 0 and error is not None:
            sighting = app_sighting("c1", manual.wall + error, k=15)
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
    _run(pipeline, timekeeper, manual, 1, None)  # the next tick sees the step
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


# ---------------------------------------------------------------------------------------------- hook


def test_check_in_per_day_across_a_step() -> None:
    """Check-in per day is being built (issue 15). When its settings land in ``RulesSettings``,
    this fails until its case is written, as the daily cap's above: whatever remembers the last
    check-in day gets a ``shift`` (called from ``JourneyRules.shift``) that re-dates it, and a
    check-in before a step over midnight still counts for the corrected day."""
    if not any("check" in name for name in RulesSettings.model_fields):
        pytest.skip("no check-in per day rule yet (issue 15)")
    pytest.fail("check-in per day exists: write its step forward/back case here (see the daily cap's)")


def test_every_local_day_rule_has_its_tests() -> None:
    assert set(LOCAL_DAY_RULES) == {"quiet hours", "cap per local day", "minimum gap", "footfall intervals"}

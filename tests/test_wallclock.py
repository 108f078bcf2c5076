"""The agent's judgement of its own clock: steps followed without ending visits, NTP state, and
the phones' tokens telling a box clock 40 minutes off, with the estimate and the correction."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.const import EDDYSTONE_SERVICE_UUID
from edge_agent.core.frames import EddystoneEid, encode_eddystone_eid
from edge_agent.core.identity import TokenResolver, eid_token
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.registry import Customer
from edge_agent.core.sighting import Sighting
from edge_agent.core.tokenclock import SEARCH_HOLD_S, SUSPECT_RUN, TokenClock
from edge_agent.core.wallclock import ClockJudge, ClockReading, Interval, TokenEvidence, marzullo
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.daemon.timekeeper import Timekeeper
from edge_agent.daemon.timers import Timers
from edge_agent.storage.database import Database
from tests.conftest import make_config
from tests.fakes import ManualClock
from tests.helpers import app_sighting, customers_downlink, many_customers

T0 = 1_764_000_000.0  # 2025-11-24 16:00 UTC


def _judge(**overrides: float) -> ClockJudge:
    settings = {"step_tolerance_s": 2.0, "min_token_customers": 3, "max_estimate_uncertainty_s": 60.0,
                "token_tolerance_s": 60.0, **overrides}  # fmt: skip
    return ClockJudge(**settings)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- pure


def test_marzullo_finds_what_most_sources_agree_on_despite_a_wrong_one() -> None:
    sources = [Interval(8, 12), Interval(11, 13), Interval(10, 12), Interval(100, 101)]
    assert marzullo(sources) == (Interval(11, 12), 3)
    assert marzullo([]) is None


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(0, 1e4)), min_size=1, max_size=30))
def test_marzullo_answer_lies_inside_as_many_intervals_as_it_claims(pairs: list[tuple[float, float]]) -> None:
    intervals = [Interval(low, low + width) for low, width in pairs]
    found = marzullo(intervals)
    assert found is not None
    best, count = found
    middle = (best.low + best.high) / 2
    assert sum(1 for i in intervals if i.low <= middle <= i.high) >= count >= 1


def test_drift_within_the_tolerance_is_followed_silently_and_a_step_is_counted() -> None:
    judge = _judge()
    judge.start(ClockReading(T0, 100.0, synced=True))
    assert judge.check(ClockReading(T0 + 1.0005, 101.0, synced=True)) == 0.0  # slewing
    assert judge.state().steps == 0
    assert judge.check(ClockReading(T0 + 2 + 10_800, 102.0, synced=True)) == 0.0  # seen once
    step = judge.check(ClockReading(T0 + 2.5 + 10_800, 102.5, synced=True))  # and confirmed
    assert abs(step - 10_800) < 0.01
    state = judge.state()
    assert state.steps == 1
    assert state.last_step is not None
    assert abs(state.last_step.size_s - 10_800) < 0.01
    assert state.trusted
    assert state.alarm is None
    assert abs(judge.offset + 102.5 - (T0 + 2.5 + 10_800)) < 0.01


def test_a_step_without_ntp_makes_the_clock_untrusted_with_an_alarm_until_ntp_syncs() -> None:
    judge = _judge()
    judge.start(ClockReading(T0, 100.0, synced=None))
    assert judge.state().trusted  # nothing says otherwise
    judge.check(ClockReading(T0 + 1 - 3600, 101.0, synced=None))
    judge.check(ClockReading(T0 + 1.5 - 3600, 101.5, synced=None))  # the step confirmed
    state = judge.state()
    assert not state.trusted
    assert state.alarm == "clock untrusted: stepped -3600 s with no NTP sync"
    judge.check(ClockReading(T0 + 2 - 3600, 102.0, synced=True))
    assert judge.state().trusted
    assert judge.state().alarm is None


def test_one_stray_reading_is_no_step_a_step_is_believed_when_the_next_reading_agrees() -> None:
    """A clock read while it is being set can give one reading from the other side: following
    it would re-date every open visit there and back."""
    judge = _judge()
    judge.start(ClockReading(T0, 100.0, synced=True))
    assert judge.check(ClockReading(T0 + 1 + 10_800, 101.0, synced=True)) == 0.0  # stray
    assert judge.check(ClockReading(T0 + 2, 102.0, synced=True)) == 0.0  # back: it was nothing
    assert judge.state().steps == 0
    assert judge.check(ClockReading(T0 + 3 + 10_800, 103.0, synced=True)) == 0.0
    assert abs(judge.check(ClockReading(T0 + 4 + 10_800, 104.0, synced=True)) - 10_800) < 0.01
    assert judge.state().steps == 1


def test_an_unsynchronised_clock_is_untrusted_without_an_alarm() -> None:
    judge = _judge()
    judge.start(ClockReading(T0, 100.0, synced=False))
    assert not judge.state().trusted
    assert judge.state().alarm is None  # many boxes never sync: the flag, not an alarm


def test_one_phone_with_its_own_clock_wrong_does_not_move_the_estimate() -> None:
    evidence = TokenEvidence(rotation_exponent=10)
    for customer in ("a", "b", "c"):  # the box is right: windows as its own time says
        evidence.heard(customer, int(T0) >> 10, T0)
    evidence.heard("wrong", (int(T0) >> 10) + 3, T0)
    found = evidence.estimate()
    assert found is not None
    interval, customers = found
    assert customers == 3
    assert interval.low <= 0.0 <= interval.high


# ---------------------------------------------------------------------------------------------- pipeline


def _store(
    tmp_path: Path, manual: ManualClock, sync: str = "none", **sections: dict
) -> tuple[Pipeline, Timekeeper]:
    config = make_config(
        tmp_path, clock={"sync_source": sync}, presence={"absence_timeout_s": 60}, **sections
    )
    timekeeper = Timekeeper(config.clock, manual.clock)
    pipeline = Pipeline(
        config, Database(config.storage.path), EventIdFactory.seeded("clock"), clock=timekeeper.clock
    )
    return pipeline, timekeeper


def _tick(pipeline: Pipeline, timekeeper: Timekeeper) -> None:
    """What the daemon's tick does (daemon.service, less the queue)."""
    step = timekeeper.check(pipeline.core.token_clock)
    if step:
        pipeline.shift(step)
    pipeline.outbox.clock_trusted = timekeeper.state().trusted
    pipeline.tick(timekeeper.now())


def _visits(pipeline: Pipeline) -> list[dict]:
    return [p for p in pipeline.outbox.peek_payloads() if p["schema"] == "visit.v1"]


def test_a_wall_step_forward_and_back_neither_ends_nor_opens_a_visit(tmp_path: Path) -> None:
    # Windows of 2^15 s (9 h), so the phone resolves whatever the box's clock says: this test is
    # about the step, not about telling the error (the test below is).
    manual = ManualClock(wall=T0 - 3 * 3600, monotonic=1000.0)
    pipeline, timekeeper = _store(tmp_path, manual, identity={"rotation_exponent": 15})
    pipeline.downlink(
        "retail/v1/stores/s1/in/customers", customers_downlink(("c1", True, True)), timekeeper.now()
    )
    error = 3 * 3600.0  # true time minus the box clock
    for second in range(300):  # five minutes in the store, heard every 5 s, two steps meanwhile
        if second == 100:
            manual.wall += 3 * 3600  # NTP steps a box that booted 3 h behind
            error = 0.0
        if second == 200:
            manual.wall -= 3600  # and the clock steps back an hour
            error = 3600.0
        if second % 5 == 0:
            sighting = app_sighting("c1", manual.wall + error, k=15)
            pipeline.process([replace(sighting, ts=timekeeper.now())])
        _tick(pipeline, timekeeper)
        manual.advance(1)
    for _ in range(70):
        _tick(pipeline, timekeeper)
        manual.advance(1)
    visits = _visits(pipeline)
    assert [v["phase"] for v in visits] == ["started", "ended"]
    assert visits[1]["duration_s"] == 295.0  # as long as it was, not 3 h or -1 h
    state = timekeeper.state()
    assert state.steps == 2
    assert state.last_step is not None
    assert round(state.last_step.size_s) == -3600
    assert not state.trusted  # stepped with nothing to vouch for the new time
    rows = pipeline.outbox.peek_payloads()
    assert "clock_trusted" not in rows[0]
    assert rows[-1]["clock_trusted"] is False


@pytest.mark.parametrize(
    "truth", [2400.0, -2400.0, 600.0], ids=["40 min behind", "40 min ahead", "10 min behind"]
)
def test_a_box_clock_40_minutes_off_is_told_by_the_phones_within_2_minutes_and_customers_resolve(
    tmp_path: Path, truth: float
) -> None:
    """The box boots 40 min off with no NTP; six customers come and go, their phones' tokens
    right. Nobody resolves at first (2,400 s is beyond one 1,024 s skew window); the tokens found
    in far windows raise the alarm with an estimate, the clock is corrected by it, and customers
    resolve from then on. Ten minutes off, within the skew window, customers resolve all along
    and their windows correct the clock the same way."""
    manual = ManualClock(wall=T0 - truth, monotonic=1000.0)
    pipeline, timekeeper = _store(tmp_path, manual)
    keys = many_customers(6)
    names = sorted(keys)
    pipeline.downlink(
        "retail/v1/stores/s1/in/customers",
        customers_downlink(*((c, True, True) for c in names)),
        timekeeper.now(),
    )
    alarm_at = estimate = None
    for second in range(3600):
        true_now = manual.wall + truth
        for index, customer in enumerate(names):
            # Each shopper stays 20 minutes, arriving 5 minutes after the one before.
            if index * 300 <= second < index * 300 + 1200 and second % 2 == index % 2:
                sighting = app_sighting(customer, true_now, rssi=-60)
                pipeline.observe(replace(sighting, ts=timekeeper.now()))
        pipeline.commit()
        _tick(pipeline, timekeeper)
        state = timekeeper.state()
        if alarm_at is None and state.alarm is not None:
            alarm_at, estimate = second, state.estimated_error_s
        manual.advance(1)
    assert alarm_at is not None, timekeeper.state()
    assert estimate is not None
    assert abs(estimate - truth) <= 120, estimate
    state = timekeeper.state()
    assert abs(state.correction_s - truth) <= 120
    assert "tokens" in state.sources
    assert not state.trusted
    started = [v for v in _visits(pipeline) if v["phase"] == "started"]
    assert {v["customer_id"] for v in started} == set(names[len(names) - len(started) :])
    assert len(started) >= 3, alarm_at  # those still to come or still in the store resolve
    if abs(truth) > 1024:  # nobody resolved before the correction: every visit is dated right
        first = min(datetime.fromisoformat(v["ts"]).timestamp() for v in started)
        assert T0 <= first <= T0 + 3600, first


def test_periodic_jobs_run_on_the_monotonic_clock_whatever_the_wall_does() -> None:
    """The daemon's tick and heartbeat: an hour's step back of the wall clock must not postpone
    them by an hour (a wall-clock scheduler's interval trigger does)."""
    manual = ManualClock()
    runs = threading.Semaphore(0)
    timers = Timers(manual.clock)
    timers.add("tick", runs.release, 1.0)
    timers.start()
    try:
        manual.wall -= 3600
        for _ in range(3):
            manual.monotonic += 1.0
            timers.poke()  # the test moved the clock; the thread re-reads it now
            assert runs.acquire(timeout=5)
    finally:
        timers.shutdown()


def test_far_windows_are_built_only_after_different_tokens_none_resolves_and_stop_when_one_does() -> None:
    """A far window costs as much as a rotation's rebuild and a live table's memory. On a right
    clock customers resolve among the non-consenting app users, so nothing far is built for one
    such phone heard all day, nor while the window of now is still being built; once several
    different tokens resolve nowhere the far windows are built and a phone three windows ahead
    is found; the first live resolution drops them and no search starts again for an hour; and
    a rotation during a search builds only the windows that came into range."""
    resolver = TokenResolver(10, 1)
    resolver.put(Customer("c1", bytes([1]) * 16, True, True))
    tokens = TokenClock(10, 1, search_windows=2)
    tokens.searching = True
    built: list[int] = []
    original = resolver.table_for
    resolver.table_for = lambda window: built.append(window) or original(window)  # type: ignore[method-assign]
    stranger = bytes([9]) * 8
    for _ in range(SUSPECT_RUN):  # distinct tokens, but the window of now is not built yet
        tokens.unresolved(resolver, bytes([_ + 100]) * 8, T0)
    resolver.advance(T0)
    for _ in range(500):  # one non-consenting phone, all day
        tokens.unresolved(resolver, stranger, T0)
        tokens.prepare(resolver, T0)
    assert built == []
    for n in range(SUSPECT_RUN - 1):
        tokens.unresolved(resolver, bytes([n + 10]) * 8, T0)
    for _ in range(4):
        tokens.prepare(resolver, T0)
    assert sorted(built) == [(int(T0) >> 10) + d for d in (-3, -2, 2, 3)]
    far = eid_token(bytes([1]) * 16, 10, int(T0) + 3 * 1024)  # the phone 3 windows ahead
    tokens.unresolved(resolver, far, T0)
    window = (int(T0) >> 10) + 3
    assert tokens.evidence.estimate() == (Interval(window * 1024 - T0, (window + 1) * 1024 - T0), 1)
    built.clear()
    for _ in range(3):
        tokens.prepare(resolver, T0 + 1024)  # a rotation mid-search: one more window either side
    assert sorted(built) == [(int(T0) >> 10) + d for d in (-1, 4)]
    assert tokens.far_windows == 4
    live = eid_token(bytes([1]) * 16, 10, int(T0) + 1024)
    assert resolver.resolve(live, T0 + 1024) == "c1"
    tokens.resolved(resolver, "c1", live, T0 + 1024)
    assert tokens.far_windows == 0
    built.clear()
    for later in (T0 + 1100, T0 + 1024 + SEARCH_HOLD_S - 10):
        for n in range(SUSPECT_RUN):
            tokens.unresolved(resolver, bytes([n + 40]) * 8, later)
        tokens.prepare(resolver, later)
    assert built == []
    tokens.prepare(resolver, T0 + 1024 + SEARCH_HOLD_S)
    assert len(built) == 1


def test_a_sliced_resolver_builds_far_windows_in_slices_after_its_own_never_in_a_tick(tmp_path: Path) -> None:
    """The daemon builds token windows a slice at a time so no sighting waits seconds; a suspect
    clock's far windows must go the same way, or a million customers' far table stalls a tick."""
    from edge_agent.core.store import StoreCore

    config = make_config(tmp_path, identity={"rotation_exponent": 10, "skew_windows": 1},
                         clock={"token_search_windows": 2})  # fmt: skip
    core = StoreCore(config, EventIdFactory.seeded("far"), tables_in_slices=True)
    keys = [bytes([n]) * 16 for n in range(1, 41)]
    core.load([Customer(f"c{n}", key, True, True) for n, key in enumerate(keys)], [], None)
    while core.precompute(T0, slots=8):  # the live windows (and the one ahead), a slice at a time
        pass
    core.token_clock.searching = True

    def heard(token: bytes, ts: float, n: int = 0) -> None:
        frame = encode_eddystone_eid(EddystoneEid(-20, token))
        core.observe(Sighting(ts, "entrance", f"5A:00:00:00:01:{n:02X}", -60,
                              service_data={EDDYSTONE_SERVICE_UUID: frame}))  # fmt: skip

    for n in range(SUSPECT_RUN):
        heard(bytes([200, n]) * 4, T0 + n / 100, n)  # app users the registry does not know
    far = eid_token(keys[5], 10, int(T0) - 2 * 1024)  # a phone two windows behind the box
    core.tick(T0 + 1)
    assert core.tables_pending  # the far window is queued for slices, not built in the tick
    heard(far, T0 + 1)
    assert core.token_clock.evidence.estimate() is None  # not built yet
    slices = 0
    while core.precompute(T0 + 1, slots=8):
        slices += 1
    assert slices >= len(keys) // 8 - 1
    heard(far, T0 + 1)
    assert core.token_clock.evidence.estimate() is not None


def test_a_sighting_stamped_just_before_a_step_but_queued_after_it_is_dated_by_the_step(
    tmp_path: Path,
) -> None:
    from edge_agent.daemon.service import Service, _ClockShift

    service = Service(make_config(tmp_path, clock={"sync_source": "none"}))
    try:
        now = service.clock.wall()
        service._pending_shift = 3 * 3600  # agent time took a step of 3 h (as _judge_clock does)
        service._handle(_ClockShift(3 * 3600))  # and the pipeline took it at its marker
        late = app_sighting("c1", now - 3 * 3600)  # stamped on the clock before the step
        assert abs(service._redated(late).ts - now) < 1
        remote = app_sighting("c1", now - 20)  # a node's sighting, 20 s old: left alone
        assert service._redated(remote).ts == remote.ts
    finally:
        service.database.close()


@given(
    st.lists(
        st.tuples(
            st.floats(0.1, 5.0), st.floats(-1e5, 1e5) | st.just(0.0), st.sampled_from([True, False, None])
        ),
        max_size=40,
    )
)
def test_agent_time_moves_by_exactly_the_steps_the_judge_returns_and_otherwise_only_within_tolerance(
    readings: list[tuple[float, float, bool | None]],
) -> None:
    """What the daemon relies on to re-date what it holds: every move of agent time beyond the
    tolerance is returned as a step, and the steps returned are the moves, to the microsecond."""
    judge = _judge()
    wall, mono = T0, 100.0
    judge.start(ClockReading(wall, mono, None))
    for elapsed, jump, synced in readings:
        wall, mono = wall + elapsed + jump, mono + elapsed
        before = judge.offset
        step = judge.check(ClockReading(wall, mono, synced))
        moved = judge.offset - before
        if step:
            assert abs(step - moved) < 1e-6
            assert abs(step) > 2.0
        else:
            assert abs(moved) <= 2.0 + 1e-6


def test_receivers_agreeing_the_box_is_off_correct_a_box_ntp_has_not_synchronised() -> None:
    judge = _judge()
    judge.start(ClockReading(T0 - 2400, 100.0, synced=False))
    offsets = {"entrance": 2400.2, "shelf": 2399.8, "counter": 2400.9}
    step = judge.receivers(offsets, configured=4)
    assert abs(step - 2400.2) < 1e-6
    state = judge.state()
    assert not state.trusted
    assert state.sources == ("system", "receivers")
    assert state.alarm == "clock off: 3 remote receivers put true time +2400 s from the system clock"
    # Once corrected, the receivers agree with agent time and are forgotten; the alarm stays
    # while the system clock is still off.
    assert judge.receivers({}, configured=4) == 0.0
    assert judge.state().alarm == "clock off: the system clock is corrected by +2400 s (receivers)"
    # NTP steps the system clock +2400 s: agent time barely moves (the receivers were right).
    assert judge.check(ClockReading(T0 + 1, 101.0, synced=True)) == 0.0  # the step seen once
    assert abs(judge.check(ClockReading(T0 + 1.5, 101.5, synced=True))) < 0.5
    assert judge.state().trusted
    assert judge.state().alarm is None


def test_a_minority_of_receivers_or_a_box_with_no_ntp_state_is_not_corrected_by_receivers() -> None:
    judge = _judge()
    judge.start(ClockReading(T0, 100.0, synced=False))
    assert judge.receivers({"a": 3600.0, "b": 3600.5}, configured=5) == 0.0  # 2 of 5
    unknown = _judge()
    unknown.start(ClockReading(T0, 100.0, synced=None))
    assert unknown.receivers({"a": 3600.0, "b": 3600.5}, configured=2) == 0.0
    assert not unknown.state().trusted  # they may share a bad SNTP server: the alarm, not a move
    assert (
        unknown.state().alarm == "clock off: 2 remote receivers put true time +3600 s from the system clock"
    )


def test_receivers_never_overrule_the_phones() -> None:
    """Receivers sharing a bad SNTP server an hour off, phones right: the phones' estimate stands,
    so the clock does not swing between the two."""
    judge = _judge()
    judge.start(ClockReading(T0, 100.0, synced=False))
    evidence = TokenEvidence(rotation_exponent=10)
    window = int(T0) >> 10
    for customer in ("a", "b", "c"):  # heard across a rotation boundary: a tight estimate of 0
        evidence.heard(customer, window, (window + 1) * 1024 - 1.0)
        evidence.heard(customer, window + 1, (window + 1) * 1024 + 1.0)
    assert judge.tokens(evidence) == 0.0
    assert judge.receivers({"a": 3600.0, "b": 3600.2}, configured=2) == 0.0
    assert judge.offset == T0 - 100.0


def test_what_the_phones_said_before_ntp_stepped_the_clock_does_not_distrust_it_after(tmp_path: Path) -> None:
    """A box boots 3 h behind; with 9 h windows its customers still resolve, but three of them
    were heard in the window after the box's, so the phones disagree with the box clock. NTP then
    steps it forward 3 h and synchronises it: the phones' bounds were measured against the old
    time and must not keep the right clock untrusted (seen in CI: the fault row for this boot
    failed whenever a window boundary fell within the 3 h)."""
    k, window = 15, 1 << 15
    truth = float(((int(T0) >> k) + 1) * window + 600)  # true time: 10 min into a window
    manual = ManualClock(wall=truth - 3 * 3600, monotonic=1000.0)  # the box: in the window before
    synced = [False]
    settings = make_config(tmp_path, clock={"sync_source": "none"}).clock
    timekeeper = Timekeeper(settings, manual.clock, synced=lambda: synced[0])
    tokens = TokenClock(k, 1, search_windows=0)
    for customer in ("c1", "c2", "c3"):
        tokens.evidence.heard(customer, int(truth) >> k, timekeeper.now())
    timekeeper.check(tokens)
    assert not timekeeper.state().trusted  # the phones say the box is off
    manual.wall += 3 * 3600  # NTP steps the clock and says it is synchronised
    synced[0] = True
    steps = [timekeeper.check(tokens) for _ in range(2)]  # a step is believed on the next reading
    assert round(sum(steps)) == 3 * 3600
    state = timekeeper.state()
    assert state.synced
    assert state.trusted, state
    assert state.alarm is None

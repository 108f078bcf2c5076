"""Visit tracking: start above the entry threshold, end after silence, at the last sighting."""

from __future__ import annotations

import itertools

from edge_agent.presence import Subject, VisitTracker

ALICE = Subject("customer", "alice")
_ids = itertools.count()


def _new_id(ts: float) -> str:
    return f"v{next(_ids)}"


def test_weak_sightings_do_not_start_a_visit() -> None:
    tracker = VisitTracker(entry_rssi_dbm=-85, absence_timeout_s=60)
    assert tracker.observe(ALICE, "entrance", -90, 100.0, _new_id) is None
    assert tracker.open_visits == {}
    assert tracker.observe(ALICE, "entrance", -80, 101.0, _new_id) is not None


def test_visit_ends_after_absence_with_the_last_sighting_as_end_time() -> None:
    tracker = VisitTracker(entry_rssi_dbm=-85, absence_timeout_s=60)
    started = tracker.observe(ALICE, "entrance", -60, 100.0, _new_id)
    assert started is not None
    for ts in (110.0, 150.0):
        assert tracker.observe(ALICE, "counter", -95, ts, _new_id) is None  # weak but still present
    assert tracker.expire(200.0) == []  # 50 s of silence < 60 s
    ended = tracker.expire(211.0)
    assert len(ended) == 1
    assert ended[0].ts == 150.0
    assert ended[0].visit.visit_id == started.visit.visit_id
    assert ended[0].visit.receivers == {"entrance": 1, "counter": 2}


def test_out_of_order_sightings_never_move_the_visit_back_in_time() -> None:
    tracker = VisitTracker(entry_rssi_dbm=-85, absence_timeout_s=60)
    tracker.observe(ALICE, "entrance", -60, 100.0, _new_id)
    tracker.observe(ALICE, "counter", -60, 130.0, _new_id)
    tracker.observe(ALICE, "entrance", -60, 120.0, _new_id)
    assert tracker.expire(185.0) == []
    assert tracker.expire(191.0)[0].ts == 130.0


def test_deadline_heap_holds_one_entry_per_open_visit_not_per_sighting() -> None:
    tracker = VisitTracker(entry_rssi_dbm=-85, absence_timeout_s=60)
    for second in range(10_000):
        tracker.observe(ALICE, "entrance", -60, float(second), _new_id)
    assert len(tracker._deadlines) == 1


def test_a_new_visit_starts_after_the_previous_one_ended() -> None:
    tracker = VisitTracker(entry_rssi_dbm=-85, absence_timeout_s=60)
    first = tracker.observe(ALICE, "entrance", -60, 0.0, _new_id)
    tracker.expire(100.0)
    second = tracker.observe(ALICE, "entrance", -60, 200.0, _new_id)
    assert first is not None
    assert second is not None
    assert first.visit.visit_id != second.visit.visit_id

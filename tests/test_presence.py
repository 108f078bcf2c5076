"""Visits and zones: start above the entry threshold, zones with hysteresis and adjacency, dwell,
end after silence at the last sighting, and a journey that survives a restart."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from edge_agent.core.layout import StoreLayout
from edge_agent.core.presence import (
    DwellReached,
    OpenVisit,
    PresenceEvent,
    Subject,
    VisitEnded,
    VisitStarted,
    VisitTracker,
    ZoneEntered,
)
from edge_agent.core.rssi import KalmanLevel, WindowMedian, distance_m
from edge_agent.core.validation import config_from_mapping

ALICE = Subject("customer", "alice")
_ids = itertools.count()

# A corridor of zones: entrance - grocery - electronics - counter (no short cut).
ZONES = ["entrance", "grocery", "electronics", "counter"]


def _config(**presence: Any) -> Any:
    return config_from_mapping(
        {
            "store": {"id": "s1", "entrance_zone": "entrance"},
            "zones": [
                {"id": "entrance", "adjacent": ["grocery"]},
                {"id": "grocery", "adjacent": ["electronics"]},
                {"id": "electronics", "adjacent": ["counter"], "dwell_s": 20},
                {"id": "counter"},
            ],
            "receivers": [{"id": z, "zone": z} for z in ZONES],
            "presence": {"entry_rssi_dbm": -85, "absence_timeout_s": 60, "filter": "none", **presence},
        }
    )


def _tracker(**presence: Any) -> VisitTracker:
    config = _config(**presence)
    return VisitTracker(config.presence, StoreLayout.from_config(config))


def _new_id(ts: float) -> str:
    return f"v{next(_ids)}"


def _hear(
    tracker: VisitTracker, ts: float, strongest: str, rssi: int = -60, others: int = -80
) -> list[PresenceEvent]:
    """One round of sightings: ``strongest`` hears the shopper at ``rssi``, the rest weaker."""
    events: list[PresenceEvent] = []
    for zone in ZONES:
        events += tracker.observe(
            ALICE, zone, rssi if zone == strongest else others, ts, _new_id, locate=True
        )
    return events


def _zones(events: list[PresenceEvent]) -> list[str]:
    return [e.stay.zone for e in events if isinstance(e, ZoneEntered)]


def test_weak_sightings_do_not_start_a_visit() -> None:
    tracker = _tracker()
    assert tracker.observe(ALICE, "entrance", -90, 100.0, _new_id) == []
    assert tracker.open_visits == {}
    [started] = tracker.observe(ALICE, "entrance", -80, 101.0, _new_id)
    assert isinstance(started, VisitStarted)


def test_visit_ends_after_absence_with_the_last_sighting_as_end_time() -> None:
    tracker = _tracker()
    [started] = tracker.observe(ALICE, "entrance", -60, 100.0, _new_id)
    for ts in (110.0, 150.0):
        assert tracker.observe(ALICE, "counter", -95, ts, _new_id) == []  # weak but still present
    assert tracker.expire(200.0) == []  # 50 s of silence < 60 s
    [ended] = tracker.expire(211.0)
    assert isinstance(ended, VisitEnded)
    assert ended.ts == 150.0
    assert ended.visit.visit_id == started.visit.visit_id
    assert ended.visit.receivers == {"entrance": 1, "counter": 2}


def test_out_of_order_sightings_never_move_the_visit_back_in_time() -> None:
    tracker = _tracker()
    tracker.observe(ALICE, "entrance", -60, 100.0, _new_id)
    tracker.observe(ALICE, "counter", -60, 130.0, _new_id)
    tracker.observe(ALICE, "entrance", -60, 120.0, _new_id)
    assert tracker.expire(185.0) == []
    assert tracker.expire(191.0)[0].ts == 130.0


def test_deadline_heap_holds_one_entry_per_open_visit_not_per_sighting() -> None:
    tracker = _tracker()
    for second in range(10_000):
        tracker.observe(ALICE, "entrance", -60, float(second), _new_id)
    assert len(tracker._deadlines) == 1


def test_a_new_visit_starts_after_the_previous_one_ended() -> None:
    tracker = _tracker()
    [first] = tracker.observe(ALICE, "entrance", -60, 0.0, _new_id)
    tracker.expire(100.0)
    [second] = tracker.observe(ALICE, "entrance", -60, 200.0, _new_id)
    assert first.visit.visit_id != second.visit.visit_id


def test_first_zone_is_entered_with_the_visit() -> None:
    tracker = _tracker()
    events = _hear(tracker, 0.0, "entrance")
    assert isinstance(events[0], VisitStarted)
    assert _zones(events) == ["entrance"]


def test_a_lead_shorter_than_the_margin_or_the_minimum_time_does_not_move_the_shopper() -> None:
    tracker = _tracker(zone_margin_db=3, zone_min_s=3)
    _hear(tracker, 0.0, "entrance")
    # grocery leads by 2 dB only: inside the margin, however long it lasts
    events = [e for t in range(1, 20) for e in _hear(tracker, float(t), "grocery", rssi=-60, others=-62)]
    assert _zones(events) == []
    # grocery leads clearly but only for 2 s, then the entrance is strongest again
    events = [e for t in (20, 21) for e in _hear(tracker, float(t), "grocery")]
    events += _hear(tracker, 22.0, "entrance")
    assert _zones(events) == []


def test_a_sustained_lead_moves_the_shopper_dated_from_when_the_lead_began() -> None:
    tracker = _tracker(zone_margin_db=3, zone_min_s=3)
    _hear(tracker, 0.0, "entrance")
    events = [e for t in range(10, 16) for e in _hear(tracker, float(t), "grocery")]
    [moved] = [e for e in events if isinstance(e, ZoneEntered)]
    assert moved.stay.zone == "grocery"
    assert moved.previous == "entrance"
    # Zones are weighed once per advertisement, at the first sighting of the next one, so the
    # lead that began with the advertisement at t=10 is seen at t=11 (one advertising interval).
    assert moved.stay.entered_at == 11.0
    assert moved.ts == 14.0


def test_a_shopper_walks_through_adjacent_zones_never_jumping_across_the_store() -> None:
    tracker = _tracker(zone_margin_db=3, zone_min_s=2)
    _hear(tracker, 0.0, "entrance")
    # The counter suddenly dominates (a shadowed path): the journey goes entrance -> grocery ->
    # electronics -> counter, one step per lead time.
    events = [e for t in range(5, 20) for e in _hear(tracker, float(t), "counter")]
    assert _zones(events) == ["grocery", "electronics", "counter"]


def test_without_adjacency_every_zone_is_reachable_directly() -> None:
    config = _config(zone_min_s=1)
    unconstrained = config.model_copy(
        update={"zones": [z.model_copy(update={"adjacent": []}) for z in config.zones]}
    )
    tracker = VisitTracker(unconstrained.presence, StoreLayout.from_config(unconstrained))
    _hear(tracker, 0.0, "entrance")
    events = [e for t in range(5, 10) for e in _hear(tracker, float(t), "counter")]
    assert _zones(events) == ["counter"]


def test_dwell_is_reported_once_per_stay_at_the_zone_threshold_even_between_sightings() -> None:
    tracker = _tracker(zone_min_s=1, dwell_s=1000)
    _hear(tracker, 0.0, "entrance")
    events = [e for t in range(1, 4) for e in _hear(tracker, float(t), "grocery")]
    events += [e for t in range(4, 8) for e in _hear(tracker, float(t), "electronics")]
    assert _zones(events) == ["grocery", "electronics"]
    arrived = next(e for e in events if isinstance(e, ZoneEntered) and e.stay.zone == "electronics")
    for t in range(8, 40, 2):
        events += _hear(tracker, float(t), "electronics")
        events += tracker.expire(float(t) + 1)
    dwells = [e for e in events if isinstance(e, DwellReached)]
    assert [d.stay.zone for d in dwells] == ["electronics"]  # grocery (1000 s default) never
    assert dwells[0].ts - arrived.stay.entered_at >= 20
    assert dwells[0].ts - arrived.stay.entered_at < 22


def test_the_ended_visit_carries_its_journey_with_contiguous_zone_intervals() -> None:
    tracker = _tracker(zone_min_s=1)
    schedule = [("entrance", 0, 10), ("grocery", 10, 60), ("electronics", 60, 100)]
    for zone, start, end in schedule:
        for t in range(start, end):
            _hear(tracker, float(t), zone)
    [ended] = tracker.expire(500.0)
    assert isinstance(ended, VisitEnded)
    path = [(s.zone, s.entered_at, s.exited_at) for s in ended.visit.path]
    # Each move is seen one advertising interval late (see the test above).
    assert path == [("entrance", 0.0, 11.0), ("grocery", 11.0, 61.0), ("electronics", 61.0, 99.0)]


def test_an_open_visit_round_trips_through_its_record() -> None:
    tracker = _tracker(zone_min_s=1)
    for t in range(20):
        _hear(tracker, float(t), "entrance" if t < 10 else "grocery")
    visit = tracker.open_visits[ALICE]
    copy = OpenVisit.from_record(json.loads(json.dumps(visit.to_record())))
    restored = _tracker(zone_min_s=1)
    restored.restore(copy)
    for t in range(20, 30):
        _hear(restored, float(t), "grocery")
    [ended] = restored.expire(200.0)
    assert isinstance(ended, VisitEnded)
    assert ended.visit.visit_id == visit.visit_id
    assert [s.zone for s in ended.visit.path] == ["entrance", "grocery"]
    assert ended.visit.started_at == 0.0


def test_layout_routes_through_the_adjacency_graph_and_locates_points() -> None:
    config = config_from_mapping(
        {
            "store": {"id": "s1"},
            "zones": [
                {"id": "a", "adjacent": ["b"], "polygon": [[0, 0], [10, 0], [10, 10], [0, 10]]},
                {"id": "b", "adjacent": ["c"], "polygon": [[10, 0], [20, 0], [20, 10], [10, 10]]},
                {"id": "c"},
            ],
        }
    )
    layout = StoreLayout.from_config(config)
    assert layout.route("a", "c") == ["a", "b", "c"]
    assert layout.step_towards("c", "a") == "b"
    assert layout.adjacent("b", "a")
    assert not layout.adjacent("a", "c")
    assert layout.zone_at((5, 5)) == "a"
    assert layout.zone_at((15, 2)) == "b"
    assert layout.zone_at((25, 5)) is None


@pytest.mark.parametrize(
    "make", [lambda r, t: KalmanLevel(r, t, 4.0, 25.0), lambda r, t: WindowMedian(r, t, 6.0)]
)
def test_filters_cut_shadowing_noise_around_a_steady_level(make: Any) -> None:
    rng = random.Random(11)
    samples = [(-70 + rng.gauss(0, 4), t * 0.5) for t in range(200)]
    level = make(samples[0][0], samples[0][1])
    errors = [abs(level.update(rssi, ts) - -70) for rssi, ts in samples[1:]][20:]
    raw = [abs(rssi - -70) for rssi, _ in samples[21:]]
    assert sum(errors) / len(errors) < 0.6 * sum(raw) / len(raw)


def test_log_distance_model() -> None:
    assert distance_m(-59, -59, 2.0) == pytest.approx(1.0)
    assert distance_m(-79, -59, 2.0) == pytest.approx(10.0)

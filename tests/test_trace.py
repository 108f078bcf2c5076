"""The trace format (DESIGN §3): what technicians record and replay."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import TraceProblem, format_trace_line, parse_trace_line, read_trace

GOOD = (
    '{"ts": 1764000000.125, "receiver": "entrance", "address": "4F:1A:00:11:22:33", "rssi": -67,'
    ' "tx_power": null, "manufacturer_data": {"76": "0215aa"},'
    ' "service_data": {"0000FEAA-0000-1000-8000-00805F9B34FB": "30e8"},'
    ' "service_uuids": ["0000feaa-0000-1000-8000-00805f9b34fb"], "name": null, "future_key": 1}'
)


def test_design_example_line_parses_to_bytes_keyed_like_bleak() -> None:
    sighting = parse_trace_line(GOOD)
    assert sighting.manufacturer_data == {76: bytes.fromhex("0215aa")}
    assert sighting.service_data == {"0000feaa-0000-1000-8000-00805f9b34fb": bytes.fromhex("30e8")}
    assert sighting.rssi == -67
    assert sighting.ts == 1764000000.125


def test_bad_lines_are_reported_with_their_number_and_skipped() -> None:
    lines = [
        "# recorded at the entrance",
        GOOD,
        "{not json",
        '{"ts": 1, "receiver": "r", "address": "a", "rssi": "loud"}',
        '{"ts": 1, "receiver": "r", "address": "a", "rssi": -50, "manufacturer_data": {"76": "zz"}}',
        "",
        GOOD,
    ]
    items = list(read_trace(lines))
    problems = [i for i in items if isinstance(i, TraceProblem)]
    assert [p.line_number for p in problems] == [3, 4, 5]
    assert "not JSON" in problems[0].reason
    assert problems[1].reason.startswith("rssi:")
    assert "hex" in problems[2].reason
    assert sum(isinstance(i, Sighting) for i in items) == 2


hex_bytes = st.binary(max_size=31)
sightings = st.builds(
    Sighting,
    ts=st.floats(min_value=0, max_value=2**32, allow_nan=False),
    receiver=st.text(min_size=1, max_size=20),
    address=st.text(min_size=1, max_size=20),
    rssi=st.integers(-127, 20),
    tx_power=st.none() | st.integers(-127, 127),
    manufacturer_data=st.dictionaries(st.integers(0, 0xFFFF), hex_bytes, max_size=3),
    service_data=st.dictionaries(st.uuids().map(str), hex_bytes, max_size=3),
    service_uuids=st.lists(st.uuids().map(str), max_size=3).map(tuple),
    name=st.none() | st.text(max_size=20),
)


@given(sightings)
def test_recorded_sighting_replays_to_an_equal_value(sighting: Sighting) -> None:
    assert parse_trace_line(format_trace_line(sighting)) == sighting


@given(st.text(max_size=300))
def test_any_text_line_is_a_sighting_or_a_problem_never_a_crash(text: str) -> None:
    for item in read_trace([text]):
        assert isinstance(item, Sighting | TraceProblem)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=20,
    )
)
def test_any_json_value_is_a_sighting_or_a_problem(value: object) -> None:
    for item in read_trace([json.dumps(value)]):
        assert isinstance(item, Sighting | TraceProblem)

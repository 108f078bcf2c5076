"""Receivers calibrated from the fixed beacons: convergence, drift, a moved beacon, bad input,
and the estimates kept across a restart. Small simulated runs of the demo store."""

from __future__ import annotations

import json
import math
import random
import tomllib
from collections.abc import Iterable
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.cli import main
from edge_agent.core.calibration import REFERENCE_POWER_DBM
from edge_agent.core.errors import ConfigError
from edge_agent.core.events import BeaconMessage, Message, ReceiverMessage
from edge_agent.core.frames import IBeacon, encode_ibeacon
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.registry import Customer
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.store import StoreCore
from edge_agent.core.validation import config_from_mapping, config_warnings
from edge_agent.daemon.pipeline import Pipeline
from edge_agent.daemon.statusview import calibration_lines
from edge_agent.storage.database import Database
from edge_agent.tools.calibrate import true_offsets, with_calibration, with_power
from edge_agent.tools.demo import demo_config
from edge_agent.tools.evaluate import drive_core
from edge_agent.tools.simulate import SimulationSettings, simulate_store_day

UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"
MOVED = f"ibeacon:{UUID}:100:6"  # the home & garden pillar's beacon in demo.toml


def _drive(
    config: AgentConfig, sightings: Iterable[Sighting], until: float | None = None
) -> tuple[StoreCore, list[Message], float]:
    """The pure core over ``sightings`` with the scheduler's 1 s ticks; stops at ``until``."""
    core = StoreCore(config, EventIdFactory.seeded("calibration-test"))
    messages: list[Message] = []
    next_tick: float | None = None
    start = 0.0
    for sighting in sightings:
        if next_tick is None:
            start = next_tick = sighting.ts
        if until is not None and sighting.ts > until:
            break
        while sighting.ts >= next_tick:
            messages += core.tick(next_tick)
            next_tick += 1.0
        messages += core.observe(sighting)
    return core, messages, start


def _errors(core: StoreCore, offsets: dict[str, float]) -> dict[str, float]:
    return {
        e.receiver: 99.0 if e.offset_db is None else round(e.offset_db - offsets[e.receiver], 2)
        for e in core.calibration.estimates()
    }


def _few_shoppers(seed: int, hours: tuple[int, int] = (9, 10), **radio: object) -> SimulationSettings:
    return SimulationSettings(shoppers=6, seed=seed, open_hours=hours, sigma_db=4.0, loss=0.1, **radio)  # type: ignore[arg-type]


def test_every_receiver_is_within_1_5_db_of_its_true_offset_after_15_minutes() -> None:
    nominal = demo_config()
    offsets = true_offsets(nominal, seed=23)
    assert max(abs(v) for v in offsets.values()) >= 5  # the test must not flatter
    simulation = simulate_store_day(with_power(nominal, offsets), _few_shoppers(23))
    core, messages, _ = _drive(nominal, simulation.sightings(), until=simulation.opening + 900)
    errors = _errors(core, offsets)
    assert all(abs(e) <= 1.5 for e in errors.values()), errors
    # ... and zone choice uses them at once.
    assert core.zone_power == pytest.approx(core.calibration.power())
    assert not [m for m in messages if isinstance(m, ReceiverMessage | BeaconMessage)]  # no false alarm


def test_a_drift_of_minus_8_db_at_14400_s_gives_exactly_one_drift_event_and_reconverges() -> None:
    nominal = demo_config()
    offsets = true_offsets(nominal, seed=5)
    settings = _few_shoppers(5, hours=(9, 14), drift=(("home", -8.0, 14400.0),))
    simulation = simulate_store_day(with_power(nominal, offsets), settings)
    drift_at = simulation.opening + 14400
    core, messages, _ = _drive(nominal, simulation.sightings())
    drifts = [m for m in messages if isinstance(m, ReceiverMessage) and m.event == "drift"]
    assert [m.receiver.receiver for m in drifts] == ["home"]
    assert drift_at < drifts[0].ts.timestamp() <= drift_at + 600
    assert drifts[0].previous_offset_db == pytest.approx(offsets["home"], abs=1.5)
    recalibrated = [m for m in messages if isinstance(m, ReceiverMessage) and m.event == "recalibrated"]
    assert [m.receiver.receiver for m in recalibrated] == ["home"]
    errors = _errors(core, offsets | {"home": offsets["home"] - 8})
    assert all(abs(e) <= 1.5 for e in errors.values()), errors
    status = core.calibration_status()
    assert status is not None
    assert {r.receiver: r.state for r in status.receivers}["home"] == "calibrated"


def test_a_moved_beacon_is_reported_and_leaves_every_receiver_within_1_5_db() -> None:
    nominal = demo_config()
    offsets = true_offsets(nominal, seed=31)
    # The beacon really hangs 10 m away from where the configuration says.
    moved = [b.model_copy(update={"position": (27.0, 10.0)}) if b.id == MOVED else b for b in nominal.beacons]
    truth = with_power(nominal, offsets).model_copy(update={"beacons": moved})
    simulation = simulate_store_day(truth, _few_shoppers(31))
    core, messages, _ = _drive(nominal, simulation.sightings(), until=simulation.opening + 1200)
    reports = [m for m in messages if isinstance(m, BeaconMessage) and m.event == "moved"]
    assert [m.beacon.beacon_id for m in reports] == [MOVED]
    assert reports[0].residuals_db
    assert len(reports[0].residuals_db) >= 2
    assert core.calibration.moved_beacons() == [MOVED]
    errors = _errors(core, offsets)
    assert all(abs(e) <= 1.5 for e in errors.values()), errors
    status = core.calibration_status()
    assert status is not None
    assert {b.beacon_id: b.state for b in status.beacons}[MOVED] == "moved"


def _small_store(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "store": {"id": "s1"},
        "zones": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
        "receivers": [
            {"id": "a", "zone": "a", "position": [0, 0]},
            {"id": "b", "zone": "b", "position": [6, 0]},
            {"id": "c", "zone": "c", "position": [80, 0]},  # far from every beacon
        ],
        "beacons": [
            {"id": f"ibeacon:{UUID}:1:1", "position": [2, 1]},
            {"id": f"ibeacon:{UUID}:1:2", "position": [4, -1]},
            {"id": f"ibeacon:{UUID}:1:3"},  # no position: health only
            {"id": f"ibeacon:{UUID}:1:4", "position": [-6, 0]},  # heard by one receiver
        ],
        "mqtt": {"host": "127.0.0.1"},
    }
    data.update(extra)
    return data


def _reading(beacon: int, receiver: str, rssi: int, ts: float) -> Sighting:
    company, payload = encode_ibeacon(IBeacon(UUID, 1, beacon, -59))
    return Sighting(ts, receiver, f"C0:00:00:00:00:{beacon:02X}", rssi, manufacturer_data={company: payload})


def _model_rssi(config: AgentConfig, beacon: int, receiver: str, rng: random.Random) -> int:
    positions = {b.id: b.position for b in config.beacons}
    bx, by = positions[f"ibeacon:{UUID}:1:{beacon}"] or (0.0, 0.0)
    rx, ry = next(r.position for r in config.receivers if r.id == receiver) or (0.0, 0.0)
    distance = max(0.5, ((bx - rx) ** 2 + (by - ry) ** 2) ** 0.5)
    return round(REFERENCE_POWER_DBM - 22 * math.log10(distance) + rng.gauss(0, 2))


def test_bad_input_is_named_and_skews_nobody() -> None:
    config = config_from_mapping(_small_store())
    warnings = {p.key: p.reason for p in config_warnings(config)}
    assert "beacons[2].position" in warnings  # watched for health only
    assert "receivers[2].position" in warnings
    assert "hears no positioned beacon" in warnings["receivers[2].position"]
    rng = random.Random(1)
    sightings = []
    for step in range(200):
        ts = 1_000_000.0 + step * 2
        for beacon, receiver in ((1, "a"), (1, "b"), (2, "a"), (2, "b"), (4, "a")):
            sightings.append(_reading(beacon, receiver, _model_rssi(config, beacon, receiver, rng), ts))
        # absurd readings from a broken node: far too strong for the distance, and below any radio
        sightings.append(_reading(1, "b", 15, ts + 0.5))
        sightings.append(_reading(2, "b", -127, ts + 0.6))
    core, _, _ = _drive(config, sightings)
    estimates = {e.receiver: e for e in core.calibration.estimates()}
    assert abs(estimates["a"].offset_db or 99) <= 1.0
    assert abs(estimates["b"].offset_db or 99) <= 1.0  # the absurd ones did not pull it
    assert estimates["b"].rejected == 400
    assert estimates["c"].state == "no_beacons"
    assert estimates["c"].offset_db is None
    assert core.counters["calibration_rejected"] == 400
    status = core.calibration_status()
    assert status is not None
    beacons = {b.beacon_id: b for b in status.beacons}
    assert beacons[f"ibeacon:{UUID}:1:4"].state == "single_receiver"
    assert f"ibeacon:{UUID}:1:3" not in beacons  # not positioned: not part of calibration


def test_a_receiver_that_stops_hearing_the_beacons_is_reported_and_recovers() -> None:
    config = config_from_mapping(_small_store(calibration={"silent_after_s": 120}))
    rng = random.Random(2)

    def readings(start: float, steps: int, receivers: tuple[str, ...]) -> list[Sighting]:
        return [
            _reading(beacon, receiver, _model_rssi(config, beacon, receiver, rng), start + step * 2)
            for step in range(steps)
            for beacon in (1, 2)
            for receiver in receivers
        ]

    t0 = 1_000_000.0
    stream = (
        readings(t0, 100, ("a", "b")) + readings(t0 + 200, 150, ("a",)) + readings(t0 + 500, 100, ("a", "b"))
    )
    _, messages, _ = _drive(config, stream)
    events = [(m.event, m.receiver.receiver) for m in messages if isinstance(m, ReceiverMessage)]
    assert events == [("silent", "b"), ("hearing", "b")]
    # A receiver that hears its beacons only too weakly to fit them is silent and recovers alike.
    far = [_reading(1, "c", -90, t0 + step * 2) for step in range(100)]
    later = [_reading(1, "c", -90, t0 + 500 + step * 2) for step in range(100)]
    stream = sorted(stream + far + later, key=lambda s: s.ts)
    _, messages, _ = _drive(config, stream)
    events = [(m.event, m.receiver.receiver) for m in messages if isinstance(m, ReceiverMessage)]
    assert sorted(events) == [("hearing", "b"), ("hearing", "c"), ("silent", "b"), ("silent", "c")]


def test_the_end_of_a_trace_is_not_every_receiver_going_silent() -> None:
    """``evaluate`` ticks on for 17 minutes after a trace's last sighting, so its visits and
    footfall close; nobody hears anything then, which is no receiver's fault."""
    nominal = demo_config()
    simulation = simulate_store_day(with_power(nominal, true_offsets(nominal, seed=13)), _few_shoppers(13))
    customers = [
        Customer(c.customer_id, c.identity_key, c.consent_service, c.consent_marketing)
        for c in simulation.customers
    ]
    messages, _, core = drive_core(nominal, customers, simulation.sightings())
    last = max(s.ts for s in simulation.sightings())
    assert max(m.ts.timestamp() for m in messages) - last > nominal.calibration.silent_after_s
    assert not [m for m in messages if isinstance(m, ReceiverMessage)]
    assert {e.state for e in core.calibration.estimates()} == {"calibrated"}


def test_receiver_and_beacon_events_and_the_status_validate_against_the_contract(tmp_path: Path) -> None:
    assert main(["schema", "export", str(tmp_path)]) == 0
    asyncapi = json.loads((tmp_path / "asyncapi.json").read_text())
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    assert "retail/v1/stores/{store_id}/events/receiver" in addresses

    def validator(name: str) -> jsonschema.protocols.Validator:
        schema = json.loads((tmp_path / "schemas" / f"{name}.json").read_text())
        cls = jsonschema.validators.validator_for(schema)
        return cls(schema, format_checker=cls.FORMAT_CHECKER)

    nominal = demo_config()
    moved = [b.model_copy(update={"position": (27.0, 10.0)}) if b.id == MOVED else b for b in nominal.beacons]
    truth = nominal.model_copy(update={"beacons": moved})
    settings = _few_shoppers(31, drift=(("toys", -8.0, 900.0),))
    simulation = simulate_store_day(truth, settings)
    core, messages, _ = _drive(nominal, simulation.sightings(), until=simulation.opening + 1800)
    checked = [m for m in messages if isinstance(m, ReceiverMessage | BeaconMessage)]
    assert {m.schema_name for m in checked} == {"receiver.v1", "beacon.v1"}
    for message in checked:
        validator(message.schema_name).validate(json.loads(message.to_json()))
    status = {
        "schema": "status.v1", "event_id": "01J0000000000000000000000A", "store_id": "s1",
        "ts": "2026-12-01T10:00:00Z", "state": "online", "agent_version": "1.0",
        "calibration": json.loads(core.calibration_status().model_dump_json()),  # type: ignore[union-attr]
    }  # fmt: skip
    validator("status.v1").validate(status)
    status["calibration"]["receivers"][0]["confidence"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validator("status.v1").validate(status)


def test_the_status_text_shows_each_receivers_estimate() -> None:
    receiver = {
        "receiver": "home", "state": "drifting", "configured_offset_db": 0.0, "offset_db": -6.5,
        "samples": 420, "beacons": 5, "residual_db": 1.2, "confidence": 0.93, "rejected": 3,
    }  # fmt: skip
    beacons = [
        {"beacon_id": "b1", "state": "in_place", "receivers": 4},
        {"beacon_id": "b2", "state": "moved", "receivers": 3},
    ]
    lines = calibration_lines({"receivers": [receiver], "beacons": beacons})
    assert lines == [
        "calibration home: drifting, configured +0.0 dB, estimated -6.5 dB, 420 readings of 5 beacons, "
        "residual 1.2 dB, confidence 0.93, 3 rejected",
        "calibration beacon b2: moved (3 receivers)",
    ]


def test_calibration_is_off_without_positioned_beacons_and_leaves_zone_choice_alone() -> None:
    data = _small_store()
    data["beacons"] = [{"id": f"ibeacon:{UUID}:1:1"}]
    core = StoreCore(config_from_mapping(data), EventIdFactory.seeded("x"))
    assert not core.calibration.active
    assert core.calibration_status() is None
    assert core.calibration.power() == {"a": -59.0, "b": -59.0, "c": -59.0}
    off = with_calibration(demo_config(), False)
    assert StoreCore(off, EventIdFactory.seeded("x")).calibration_status() is None


def test_estimates_are_kept_across_a_restart_and_apply_at_once(tmp_path: Path) -> None:
    data = _small_store(storage={"path": str(tmp_path / "agent.db")})
    config = config_from_mapping(data)
    rng = random.Random(3)
    hot = 6  # receiver b reads 6 dB hot
    pipeline = Pipeline(config, Database(config.storage.path), EventIdFactory.seeded("t"))
    ts = 1_000_000.0
    for step in range(150):
        ts = 1_000_000.0 + step * 2
        batch = [
            _reading(
                beacon, receiver, _model_rssi(config, beacon, receiver, rng) + hot * (receiver == "b"), ts
            )
            for beacon in (1, 2)
            for receiver in ("a", "b")
        ]
        pipeline.process(batch)
        pipeline.tick(ts)
    pipeline.tick(ts + 61)
    before = pipeline.core.calibration.power()
    assert before["b"] == pytest.approx(-59 + hot, abs=1.0)
    status = pipeline.status("online", ts + 61).calibration
    assert status is not None
    assert {r.receiver: r.state for r in status.receivers}["b"] == "calibrated"
    pipeline.database.close()

    again = Pipeline(config, Database(config.storage.path), EventIdFactory.seeded("t2"))
    assert again.core.calibration.power()["b"] == pytest.approx(before["b"], abs=0.01)
    assert again.core.zone_power["b"] == pytest.approx(before["b"], abs=0.01)
    again.database.close()


def _toml_with_power(offsets: dict[str, float], path: Path) -> Path:
    """The demo store's file with each receiver's true 1 m power written in."""
    text = (Path(__file__).parent.parent / "edge_agent" / "data" / "demo.toml").read_text()
    lines = []
    for line in text.splitlines():
        lines.append(line)
        if lines[-2:-1] == ["[[receivers]]"] and line.startswith("id = "):
            receiver = line.split('"')[1]
            lines.append(f"measured_power_dbm = {round(REFERENCE_POWER_DBM + offsets[receiver])}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_simulate_calibrate_and_evaluate_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    offsets = true_offsets(demo_config(), seed=8)
    true_config = _toml_with_power(offsets, tmp_path / "true.toml")
    out = tmp_path / "day"
    simulate = ["simulate", "--config", str(true_config), "--out", str(out), "--shoppers", "5"]
    assert main([*simulate, "--beacon-interval", "30", "--drift", "home:-8@14400"]) == 0
    header = json.loads((out / "truth.jsonl").read_text().splitlines()[0])
    assert header["drift"] == [["home", -8.0, 14400.0]]
    assert main(["simulate", "--out", str(out), "--drift", "attic:-8@10"]) == 2
    assert "unknown receiver 'attic'" in capsys.readouterr().err

    suggested = tmp_path / "suggested.toml"
    assert main(["calibrate", str(out / "trace.jsonl"), "--write-toml", str(suggested)]) == 0
    printed = capsys.readouterr().out
    assert "receiver.v1 drift home" in printed
    rows = {line.split()[0]: line.split() for line in printed.splitlines() if line.split()[:1] != []}
    assert rows["bakery"][1] == "+0.0"  # configured (the demo's nominal values)
    written = tomllib.loads(suggested.read_text())["receivers"]
    truth = offsets | {"home": offsets["home"] - 8}
    for receiver in written:
        assert abs(receiver["measured_power_dbm"] - (REFERENCE_POWER_DBM + truth[receiver["id"]])) <= 2

    evaluate = ["evaluate", str(out / "trace.jsonl"), str(out / "truth.jsonl"), "--json"]
    assert main([*evaluate, "--truth-config", str(true_config)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["calibration"] is True
    assert all(abs(e) <= 2 for e in figures["calibration_error_db"].values()), figures["calibration_error_db"]
    assert main([*evaluate, "--no-calibration"]) == 0
    assert json.loads(capsys.readouterr().out)["calibration"] is False


def test_a_receiver_that_advertises_calibrates_the_others_from_where_it_hangs() -> None:
    data = _small_store()
    data["receivers"] = [
        {"id": "a", "zone": "a", "position": [0, 0]},
        {"id": "b", "zone": "b", "position": [6, 0], "beacon": f"ibeacon:{UUID}:1:5"},
    ]
    data["beacons"] = [{"id": f"ibeacon:{UUID}:1:5"}]  # no position of its own: b's
    config = config_from_mapping(data)
    assert "beacons[0].position" not in {p.key for p in config_warnings(config)}
    rng = random.Random(4)
    hot = 4  # receiver a reads 4 dB hot
    expected = REFERENCE_POWER_DBM - 22 * math.log10(6)
    stream = [
        _reading(5, "a", round(expected + hot + rng.gauss(0, 2)), 1_000_000.0 + step * 2)
        for step in range(100)
    ]
    core, _, _ = _drive(config, stream)
    estimates = {e.receiver: e for e in core.calibration.estimates()}
    assert estimates["a"].offset_db == pytest.approx(hot, abs=1.0)
    assert estimates["b"].state == "no_beacons"
    with pytest.raises(ConfigError, match=r"receivers\[1\]\.beacon"):
        config_from_mapping(data | {"beacons": []})
    # Two receivers cannot both advertise one beacon: it would be placed where the last one hangs.
    twice = [
        *data["receivers"],
        {"id": "c", "zone": "c", "position": [40, 0], "beacon": f"ibeacon:{UUID}:1:5"},
    ]  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"receivers\[2\]\.beacon.*already the beacon of receiver 'b'"):
        config_from_mapping(data | {"receivers": twice})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "ghost", ""]),
            st.integers(min_value=1, max_value=6),
            st.integers(min_value=-127, max_value=20),
            st.floats(min_value=0, max_value=4000, allow_nan=False),
        ),
        max_size=60,
    )
)
def test_whatever_arrives_over_the_air_never_raises_nor_moves_a_receiver_it_does_not_name(
    readings: list[tuple[str, int, int, float]],
) -> None:
    config = config_from_mapping(_small_store(calibration={"min_samples": 1}))
    core = StoreCore(config, EventIdFactory.seeded("fuzz"))
    for step in range(40):  # receiver a calibrated from clean readings first
        core.observe(_reading(1, "a", -65, 1_000_000.0 + step))
        core.observe(_reading(2, "a", -70, 1_000_000.0 + step))
    core.tick(1_000_100.0)
    before = core.calibration.power()["a"]
    for receiver, beacon, rssi, offset in readings:
        if receiver != "a":
            core.observe(_reading(beacon, receiver, rssi, 1_000_100.0 + offset))
    for ts in (1_000_200.0, 1_000_400.0, 1_004_200.0):
        core.tick(ts)
        core.calibration_status()
    assert (
        core.calibration.power()["a"] == pytest.approx(before) or not core.calibration.estimates()[0].samples
    )


def test_a_silent_receiver_is_a_warning_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = _small_store(storage={"path": str(tmp_path / "agent.db")}, calibration={"silent_after_s": 120})
    config = config_from_mapping(data)
    pipeline = Pipeline(config, Database(config.storage.path), EventIdFactory.seeded("t"))
    rng = random.Random(5)
    ts = 1_000_000.0
    for step in range(100):
        ts = 1_000_000.0 + step * 2
        pipeline.process([_reading(b, r, _model_rssi(config, b, r, rng), ts) for b in (1, 2) for r in "ab"])
        pipeline.tick(ts)
    with caplog.at_level("WARNING", logger="edge_agent.daemon.pipeline"):
        for later in range(1, 400, 10):  # a still hears the beacons, b no longer does
            pipeline.process([_reading(b, "a", _model_rssi(config, b, "a", rng), ts + later) for b in (1, 2)])
            pipeline.tick(ts + later)
    warned = [r.getMessage() for r in caplog.records if "calibration silent" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].startswith("receiver b: calibration silent (offset ")
    pipeline.database.close()


@pytest.mark.parametrize("step", [3 * 3600.0, -3600.0], ids=["forward 3 h", "back 1 h"])
def test_a_clock_step_neither_resets_calibration_nor_delays_a_silent_receiver(step: float) -> None:
    """The agent follows a wall-clock step by re-dating what it holds (``StoreCore.shift``). A
    step forward must not age every reading out of the window (each receiver "silent", its
    estimate refitted from nothing); a step back must not leave the last readings an hour in
    the future, so a receiver that then goes quiet is still reported after ``silent_after_s``."""
    config = config_from_mapping(_small_store(calibration={"silent_after_s": 120}))
    rng = random.Random(3)
    core = StoreCore(config, EventIdFactory.seeded("calibration-step"))
    messages: list[Message] = []

    def run(start: float, seconds: int, receivers: tuple[str, ...]) -> None:
        for second in range(seconds):
            ts = start + second
            if second % 2 == 0:
                for beacon in (1, 2):
                    for receiver in receivers:
                        messages.extend(
                            core.observe(
                                _reading(beacon, receiver, _model_rssi(config, beacon, receiver, rng), ts)
                            )
                        )
            messages.extend(core.tick(ts))

    t0 = 1_000_000.0
    run(t0, 300, ("a", "b"))
    before = {e.receiver: e.offset_db for e in core.calibration.estimates()}
    assert None not in (before["a"], before["b"])
    samples = {e.receiver: e.samples for e in core.calibration.estimates()}
    core.shift(step)
    after_step = t0 + 300 + step
    run(after_step, 62, ("a", "b"))  # the first fit after the step: the window is still full
    now = {e.receiver: e for e in core.calibration.estimates()}
    assert [now[r].state for r in ("a", "b")] == ["calibrated", "calibrated"]
    assert all(now[r].samples >= samples[r] for r in ("a", "b")), (samples, now)
    run(after_step + 62, 38, ("a", "b"))
    after = {e.receiver: e.offset_db for e in core.calibration.estimates()}
    assert all(abs((after[r] or 99) - (before[r] or 0)) <= 1.0 for r in ("a", "b")), (before, after)
    run(after_step + 100, 300, ("a",))  # b stops hearing the beacons
    events = [(m.event, m.receiver.receiver, m.ts) for m in messages if isinstance(m, ReceiverMessage)]
    assert [(event, receiver) for event, receiver, _ in events] == [("silent", "b")]
    silent_at = events[0][2].timestamp()
    assert after_step + 98 + 120 <= silent_at <= after_step + 100 + 120 + 60 + 1  # a fit a minute

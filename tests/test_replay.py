"""``edge-agent replay``: a committed trace through the real core, no broker, same output twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.tools.replay import DownlinkSpec, DownlinkSpecError, parse_downlink_spec, read_downlink_specs
from tests.conftest import REPO

SAMPLE = REPO / "traces" / "sample"
DEMO_CONFIG = REPO / "edge_agent" / "data" / "demo.toml"


def _replay(*extra: str, trace: Path = SAMPLE / "trace.jsonl") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "replay", str(trace), "--config", str(DEMO_CONFIG), *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _with_downlinks() -> list[str]:
    return [
        "--downlink",
        f"customers={SAMPLE / 'customers.jsonl'}",
        "--downlink",
        f"orders={SAMPLE / 'orders.jsonl'}",
    ]


def test_replay_of_committed_trace_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert _replay(*_with_downlinks(), "--output", str(first)).returncode == 0
    assert _replay(*_with_downlinks(), "--output", str(second)).returncode == 0
    assert first.read_bytes() == second.read_bytes()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert records, "replay wrote nothing"
    assert all(set(r) == {"topic", "payload"} for r in records)
    schemas = {r["payload"]["schema"] for r in records}
    assert {"visit.v1", "footfall.v1", "notification.v1"} <= schemas
    ids = [r["payload"]["event_id"] for r in records]
    assert len(ids) == len(set(ids))


def test_replay_without_registry_recognises_nobody(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert _replay("--output", str(out)).returncode == 0
    schemas = [json.loads(line)["payload"]["schema"] for line in out.read_text().splitlines()]
    assert "visit.v1" not in schemas
    assert "notification.v1" not in schemas
    assert "footfall.v1" in schemas


def test_every_visit_started_in_the_replay_also_ends(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    _replay(*_with_downlinks(), "--output", str(out))
    visits = [json.loads(line)["payload"] for line in out.read_text().splitlines() if "/events/visit" in line]
    started = {v["visit_id"] for v in visits if v["phase"] == "started"}
    ended = {v["visit_id"] for v in visits if v["phase"] == "ended"}
    assert started
    assert started == ended


def test_bad_trace_lines_are_reported_by_number_and_skipped(tmp_path: Path) -> None:
    lines = (SAMPLE / "trace.jsonl").read_text().splitlines()[:40]
    lines[5] = "{broken"
    lines[9] = '{"ts": 1, "receiver": "entrance", "address": "x", "rssi": 500}'
    trace = tmp_path / "bad.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    result = _replay("--output", "-", trace=trace)
    assert result.returncode == 0
    assert "trace line 6: not JSON" in result.stderr
    assert "trace line 10: rssi:" in result.stderr
    assert "2 bad trace lines skipped" in result.stderr


def test_rejected_downlink_file_shows_up_on_the_errors_topic(tmp_path: Path) -> None:
    bad = tmp_path / "orders.jsonl"
    bad.write_text('{"schema": "orders.v1", "message_id": "m1", "orders": []}\n')
    result = _replay("--downlink", f"orders={bad}", "--output", "-")
    errors = [json.loads(line) for line in result.stdout.splitlines() if "/errors" in line]
    assert len(errors) == 1
    assert errors[0]["payload"]["message_id"] == "m1"
    assert "orders" in errors[0]["payload"]["reason"]


def test_a_trace_from_receivers_the_config_does_not_know_is_named_once_each(tmp_path: Path) -> None:
    lines = (SAMPLE / "trace.jsonl").read_text().splitlines()
    sightings = [i for i, line in enumerate(lines) if line.startswith("{")]
    for index in sightings[:3]:
        lines[index] = lines[index].replace('"receiver":"', '"receiver":"door-2","was":"', 1)
    for index in sightings[3:5]:
        lines[index] = lines[index].replace('"receiver":"', '"receiver":"attic","was":"', 1)
    trace = tmp_path / "elsewhere.jsonl"
    trace.write_text("\n".join(lines) + "\n")
    result = _replay("--output", "-", trace=trace)
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if "not in the configuration" in line]
    assert warnings == [
        "trace receiver 'attic' is not in the configuration: its 2 sightings were ignored (the "
        "configuration knows: entrance, checkout, counter, clothing, home, toys, grocery, bakery, "
        "electronics)",
        "trace receiver 'door-2' is not in the configuration: its 3 sightings were ignored (the "
        "configuration knows: entrance, checkout, counter, clothing, home, toys, grocery, bakery, "
        "electronics)",
    ]


def test_the_replay_report_counts_sightings_of_unknown_receivers() -> None:
    import io

    from edge_agent.adapters.configfile import load_config
    from edge_agent.tools.replay import replay

    config = load_config(DEMO_CONFIG)
    line = (SAMPLE / "trace.jsonl").read_text().splitlines()[2]
    ghost = line.replace('"receiver":"', '"receiver":"ghost","was":"', 1)
    problems = io.StringIO()
    report = replay(config, [line, ghost, ghost], io.StringIO(), problems=problems)
    assert report.unknown_receivers == {"ghost": 2}
    assert report.known_receivers == tuple(r.id for r in config.receivers)
    assert problems.getvalue().count("'ghost'") == 1


def test_malformed_downlink_option_is_a_usage_error() -> None:
    result = _replay("--downlink", "customers", "--output", "-")
    assert result.returncode == 2
    assert "KIND=FILE" in result.stderr


# ------------------------------------------------------------------ --downlink KIND=FILE[@WHEN]

_KINDS = st.text(st.characters(blacklist_characters="=\x00"), min_size=1, max_size=12)
_FILES = st.text(st.characters(blacklist_characters="\x00"), min_size=1, max_size=20)
_WHENS = st.one_of(
    st.integers(0, 2**40).map(str),
    st.floats(0, 1e10, allow_nan=False).map(repr),
    st.integers(0, 86_400).map(lambda s: f"+{s}"),
    st.floats(0, 86_400, allow_nan=False).map(lambda s: f"+{s!r}"),
)


@given(kind=_KINDS, file=_FILES.filter(lambda f: "@" not in f))
def test_a_well_formed_spec_without_when_round_trips(kind: str, file: str) -> None:
    spec = parse_downlink_spec(f"{kind}={file}")
    assert spec == DownlinkSpec(kind, file, "")
    assert str(spec) == f"{kind}={file}"


@given(kind=_KINDS, file=_FILES, when=_WHENS)
def test_a_well_formed_spec_with_when_round_trips_whatever_the_file_name_holds(
    kind: str, file: str, when: str
) -> None:
    spec = parse_downlink_spec(f"{kind}={file}@{when}")
    assert spec == DownlinkSpec(kind, file, when)
    assert parse_downlink_spec(str(spec)) == spec


@given(
    spec=st.one_of(
        st.text(st.characters(blacklist_characters="="), max_size=20),  # no KIND=
        _FILES.map(lambda f: f"={f}"),  # no KIND
        _KINDS.map(lambda k: f"{k}="),  # no FILE
        st.tuples(_KINDS, _WHENS).map(lambda kw: f"{kw[0]}=@{kw[1]}"),  # no FILE before WHEN
        st.tuples(_KINDS, _FILES, st.sampled_from(["noon", "+", "1h", "+-+1", "12:00"])).map(
            lambda kfw: f"{kfw[0]}={kfw[1]}@{kfw[2]}"
        ),  # a WHEN that is no number of seconds
    )
)
def test_a_malformed_spec_raises_the_error_the_command_prints(spec: str) -> None:
    with pytest.raises(DownlinkSpecError) as raised:
        parse_downlink_spec(spec)
    assert str(raised.value) == (
        f"--downlink expects KIND=FILE or KIND=FILE@WHEN (seconds or +seconds), got {spec!r}"
    )


def test_specs_read_in_order_into_downlinks_before_the_trace_and_timed_ones(tmp_path: Path) -> None:
    orders, late = tmp_path / "orders.jsonl", tmp_path / "late@noon.jsonl"
    orders.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    late.write_text('{"b": 1}\n', encoding="utf-8")
    downlinks, timed = read_downlink_specs([f"orders={orders}", f"orders={late}@+60", f"lists={orders}"])
    assert downlinks == [
        ("orders", b'{"a": 1}'),
        ("orders", b'{"a": 2}'),
        ("lists", b'{"a": 1}'),
        ("lists", b'{"a": 2}'),
    ]
    assert timed == [("orders", b'{"b": 1}', "+60")]
    with pytest.raises(DownlinkSpecError, match=r"^cannot read downlink file \./none: No such file"):
        read_downlink_specs(["customers=./none", "malformed"])


def test_the_sample_trace_is_what_its_header_command_makes(tmp_path: Path) -> None:
    """The committed sample says how it was made; that command must still make it, byte for byte."""
    header = (SAMPLE / "trace.jsonl").read_text(encoding="utf-8").splitlines()[1]
    command = header.removeprefix("# made by: ").split()
    assert command[:4] == ["edge-agent", "demo", "--export", "DIR"], header
    out = tmp_path / "day"
    subprocess.run(
        [sys.executable, "-m", "edge_agent", *command[1:3], str(out), *command[4:]],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    made = sorted(p.name for p in out.iterdir())
    assert made == sorted(p.name for p in SAMPLE.iterdir())
    for name in made:
        assert (out / name).read_bytes() == (SAMPLE / name).read_bytes(), name

"""``edge-agent replay``: a committed trace through the real core, no broker, same output twice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def test_malformed_downlink_option_is_a_usage_error() -> None:
    result = _replay("--downlink", "customers", "--output", "-")
    assert result.returncode == 2
    assert "KIND=FILE" in result.stderr

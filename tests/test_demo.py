"""``edge-agent demo``: the README's first command, end to end through a broker."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.tools.demo import JOURNEY_ROWS
from tests.conftest import Mosquitto


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", "demo", "--shoppers", "48", "--hours", "4", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )


def _figure(output: str, name: str) -> int:
    match = re.search(rf"{re.escape(name)}\s*│\s*(\d+)", output)
    assert match, f"{name!r} missing from the summary:\n{output}"
    return int(match.group(1))


def test_demo_on_the_embedded_broker_publishes_and_leaves_nothing_behind() -> None:
    result = _demo()
    assert result.returncode == 0, result.stdout + result.stderr
    assert _figure(result.stdout, "messages published (PUBACK received)") > 0
    assert _figure(result.stdout, "messages left in the outbox") == 0
    assert _figure(result.stdout, "customer visits recognised") > 0
    assert _figure(result.stdout, "notifications to customers") > 0
    assert "example customer notification" in result.stdout
    # The demo day exercises every journey rule, and its summary counts them.
    for row in JOURNEY_ROWS:
        assert _figure(result.stdout, row) > 0, row
    assert _figure(result.stdout, "outcomes that worked") <= _figure(result.stdout, "outcomes decided")


@pytest.mark.mqtt
def test_demo_against_a_real_broker(mosquitto: Mosquitto) -> None:
    result = _demo("--broker", mosquitto.address)
    assert result.returncode == 0, result.stdout + result.stderr
    published = _figure(result.stdout, "messages published (PUBACK received)")
    received = sum(int(n) for n in re.findall(r"received on …/\S+\s*│\s*(\d+)", result.stdout))
    assert published > 0
    assert received >= published  # HQ saw every acknowledged event (plus retained status)


def test_demo_rejects_an_impossible_day() -> None:
    result = _demo("--hours", "30")
    assert result.returncode == 2
    assert "--hours must be between 2 and 14" in result.stderr


def test_the_exported_day_is_a_trace_and_downlinks_replay_reads(tmp_path: Path) -> None:
    from edge_agent.core.sighting import Sighting
    from edge_agent.core.trace import read_trace
    from edge_agent.tools.demo import export_demo_day
    from edge_agent.tools.replay import read_downlink_file

    sightings, downlinks = export_demo_day(tmp_path / "day", seed=3, shoppers=8, hours=2)
    trace = (tmp_path / "day" / "trace.jsonl").read_text(encoding="utf-8").splitlines()
    assert trace[:2] == [
        "# edge-agent synthetic store day: seed 3, 8 shoppers, 2 h",
        "# made by: edge-agent demo --export DIR --seed 3 --shoppers 8 --hours 2",
    ]
    parsed = list(read_trace(trace))
    assert len(parsed) == sightings > 0
    assert all(isinstance(item, Sighting) for item in parsed)
    files = sorted((tmp_path / "day").glob("*.jsonl"))
    assert [f.name for f in files if f.name != "trace.jsonl"] == [
        "customers.jsonl",
        "lists.jsonl",
        "offers.jsonl",
        "orders.jsonl",
        "planogram.jsonl",
    ]
    assert sum(len(read_downlink_file(f)) for f in files if f.name != "trace.jsonl") == downlinks

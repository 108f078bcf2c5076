"""Fault injection: kill -9 the agent at random points of a run and classify every event at a
real mosquitto subscriber as delivered, lost, duplicated or unexpected (after Jepsen's queue
checker). Lost must be 0; duplicates are reported, not hidden."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, Mosquitto, Subscriber, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.mqtt]

EVENTS = 1500
KILLS = 20


def _generated(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT count(*) FROM generated").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def _start(db: Path, broker: Mosquitto) -> subprocess.Popen[bytes]:
    # Output goes to a file, not a pipe nobody reads: a full pipe would stall the process.
    with (db.parent / "agent.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.fault_agent", str(db), broker.host, str(broker.port), str(EVENTS)],
            cwd=REPO, stdout=log, stderr=log,
        )  # fmt: skip


def test_kill_9_at_twenty_random_points_loses_nothing(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    subscriber_factory: Callable[..., Subscriber],
) -> None:
    broker = mosquitto_factory(persistence=True).start()
    hq = subscriber_factory(broker, "retail/v1/stores/f1/events/#", client_id="hq-faults", persistent=True)
    db = tmp_path / "agent.db"
    rng = random.Random(20261123)
    points = sorted(rng.sample(range(20, EVENTS - 20), KILLS))
    for point in points:
        process = _start(db, broker)
        # Kill once the generator has passed this point: while generating, publishing, between
        # a PUBACK and its delete, wherever the process happens to be.
        wait_for(
            lambda p=point, proc=process: _generated(db) >= p or proc.poll() is not None,
            30, f"progress to {point}",
        )  # fmt: skip
        assert process.poll() is None, (db.parent / "agent.log").read_text()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    final = _start(db, broker)
    assert final.wait(120) == 0, (db.parent / "agent.log").read_text()[-2000:]
    assert "drained" in (db.parent / "agent.log").read_text()

    generated = {f"E{i:06d}" for i in range(EVENTS)}
    wait_for(lambda: set(hq.event_ids()) >= generated, 30, "every generated event at HQ")
    seen = Counter(hq.event_ids())
    delivered = generated & set(seen)
    lost = generated - set(seen)
    duplicated = {e: n for e, n in seen.items() if n > 1}
    unexpected = set(seen) - generated
    print(f"\nkill -9 x{KILLS}: generated {len(generated)}  delivered {len(delivered)}  lost {len(lost)}  "
          f"duplicated {len(duplicated)}  unexpected {len(unexpected)}")  # fmt: skip
    assert lost == set()
    assert unexpected == set()
    # Duplicates are the rows in flight at a kill (window 100), resent by the next process.
    assert len(duplicated) <= KILLS * 100

"""HQ under a fleet: end-to-end messages/s and outbox -> HQ database latency for N stores.

Each N runs twice against a local mosquitto started for the purpose: paced (10 events per store
per second for 10 s: latency at a realistic load) and a burst of 100 events per store (the
backlog after an outage: capacity). Two HQ consumer instances share one group. See
``edge_agent.tools.fleet``; the CLI equivalent is ``edge-agent simulate-fleet``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from edge_agent.tools.fleet import run_fleet
from tests.conftest import Mosquitto  # the test suite's broker launcher: the same settings

SIZES = (10, 50, 200)
MODES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("paced 10/s/store", {"rate": 10.0, "seconds": 10.0}),
    ("burst 100/store", {"burst": 100}),
)


def bench_fleet() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-agent-fleet-broker-") as workdir:
        broker = Mosquitto(Path(workdir)).start()
        try:
            for stores in SIZES:
                for mode, kwargs in MODES:
                    result = run_fleet(broker.host, broker.port, stores, **kwargs)
                    rows.append(
                        {"name": f"fleet N={stores}, {mode}: end to end", "unit": "msg/s",
                         "value": result.messages_per_s, "ratio": None, "mode": mode,
                         **dataclasses.asdict(result)}
                    )  # fmt: skip
                    rows.append(
                        {"name": f"fleet N={stores}, {mode}: p99 outbox -> HQ db", "unit": "ms",
                         "value": result.latency_p99_ms, "ratio": None}
                    )  # fmt: skip
        finally:
            broker.stop()
    return rows

"""Files of ``edge-agent simulate`` and ``evaluate``: trace, ground truth, registry downlink.

The trace is the ordinary trace format (DESIGN §3), so ``replay`` and ``evaluate`` read it like a
recording. The truth file is JSON Lines: one ``simulation`` record (the settings and the command
that made it), one ``customer`` record per app user (simulated identity keys: the evaluator
needs them to build the registry), one ``visit`` record per shopper. ``customers.json`` is the
registry as HQ would send it, for ``replay --downlink customers=...``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edge_agent.core.registry import Customer
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import TraceProblem, format_trace_line, read_trace
from edge_agent.tools.simulate import StoreDaySimulation, TrueVisit


class TruthFileError(ValueError):
    """A truth file that is not one ``simulate`` wrote; the message names the line."""


def write_simulation(simulation: StoreDaySimulation, out: Path, command: str) -> tuple[int, int]:
    """Write trace.jsonl, truth.jsonl and customers.json into ``out``; return (sightings, visits)."""
    out.mkdir(parents=True, exist_ok=True)
    settings = simulation.settings
    count = 0
    with (out / "trace.jsonl").open("w", encoding="utf-8") as trace:
        trace.write(f"# edge-agent simulated store day for {simulation.store_id}\n# made by: {command}\n")
        for sighting in simulation.sightings():
            trace.write(format_trace_line(sighting) + "\n")
            count += 1
    truth = simulation.truth()
    with (out / "truth.jsonl").open("w", encoding="utf-8") as handle:
        header = {"record": "simulation", "store_id": simulation.store_id, "command": command}
        header.update({k: _plain(v) for k, v in dataclasses.asdict(settings).items()})
        handle.write(json.dumps(header) + "\n")
        for customer in simulation.customers:
            record: dict[str, object] = {
                "record": "customer", "customer_id": customer.customer_id,
                "identity_key": customer.identity_key.hex(), "platform": customer.platform,
                "consent": {"service": customer.consent_service, "marketing": customer.consent_marketing},
            }  # fmt: skip
            handle.write(json.dumps(record) + "\n")
        for visit in truth:
            record = {
                "record": "visit", "shopper": visit.shopper_id, "customer_id": visit.customer_id,
                "consenting": visit.consenting, "start": visit.start, "end": visit.end,
                "zones": [[zone, round(a, 3), round(b, 3)] for zone, a, b in visit.zones],
            }  # fmt: skip
            handle.write(json.dumps(record) + "\n")
    registry = {
        "schema": "customers.v1", "message_id": f"sim-registry-{settings.seed}", "full": True, "version": 1,
        "upsert": [
            {"customer_id": c.customer_id, "identity_key": c.identity_key.hex(),
             "consent": {"service": c.consent_service, "marketing": c.consent_marketing}}
            for c in simulation.customers
        ],
    }  # fmt: skip
    (out / "customers.json").write_text(json.dumps(registry) + "\n", encoding="utf-8")
    return count, len(truth)


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def read_truth(path: Path) -> tuple[list[Customer], list[TrueVisit]]:
    customers: list[Customer] = []
    visits: list[TrueVisit] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                kind = record["record"]
                if kind == "customer":
                    consent = record["consent"]
                    customers.append(
                        Customer(
                            record["customer_id"], bytes.fromhex(record["identity_key"]),
                            bool(consent["service"]), bool(consent["marketing"]),
                        )
                    )  # fmt: skip
                elif kind == "visit":
                    visits.append(
                        TrueVisit(
                            record["shopper"], record["customer_id"], bool(record["consenting"]),
                            float(record["start"]), float(record["end"]),
                            [(str(z), float(a), float(b)) for z, a, b in record["zones"]],
                        )
                    )  # fmt: skip
            except (ValueError, KeyError, TypeError) as exc:
                raise TruthFileError(f"{path}:{number}: not a truth record ({exc})") from None
    return customers, visits


def read_drift(path: Path) -> list[tuple[str, float]]:
    """(receiver, dB) of every gain shift the simulation applied (``simulate --drift``)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                if record.get("record") == "simulation":
                    return [(str(r), float(db)) for r, db, _ in record.get("drift", [])]
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise TruthFileError(f"{path}:{number}: not a truth record ({exc})") from None
    return []


def read_trace_file(path: Path, problems: list[TraceProblem]) -> Iterator[Sighting]:
    """Sightings of a trace file; bad lines are collected in ``problems`` and skipped."""
    with path.open(encoding="utf-8") as handle:
        for item in read_trace(handle):
            if isinstance(item, TraceProblem):
                problems.append(item)
            else:
                yield item

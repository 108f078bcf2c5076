"""Presence accuracy on a simulated store day, per RSSI filter: what ``presence.filter`` is for.

The issue's day: the demo store (9 zones), 300 shoppers, shadowing sigma 4 dB, 10% packet loss,
seed 7. Each filter runs the same sightings through the core; ``none`` is the baseline.
Equivalent CLI: ``edge-agent simulate --out DIR`` then
``edge-agent evaluate DIR/trace.jsonl DIR/truth.jsonl --filter F``.
"""

from __future__ import annotations

import dataclasses
import time

from edge_agent.core.registry import Customer
from edge_agent.tools.demo import demo_config
from edge_agent.tools.evaluate import run_core, score
from edge_agent.tools.simulate import SimulationSettings, simulate_store_day

FILTERS = ("kalman", "median", "none")


def bench_accuracy(shoppers: int = 300, seed: int = 7) -> list[dict]:
    settings = SimulationSettings(shoppers=shoppers, seed=seed, sigma_db=4.0, loss=0.1)
    rows = []
    for name in FILTERS:
        config = demo_config()
        config = config.model_copy(update={"presence": config.presence.model_copy(update={"filter": name})})
        simulation = simulate_store_day(config, settings)
        customers = [
            Customer(c.customer_id, c.identity_key, c.consent_service, c.consent_marketing)
            for c in simulation.customers
        ]
        started = time.perf_counter()
        messages, count = run_core(config, customers, simulation.sightings())
        elapsed = time.perf_counter() - started
        scores = score(simulation.truth(), messages, count)
        figures = dataclasses.asdict(scores)
        rows.append(
            {
                "name": f"zone-time accuracy, filter={name}",
                "unit": "fraction",
                "value": scores.zone_accuracy,
                "ratio": None,
                "filter": name,
                "seed": seed,
                "seconds_incl_simulation": elapsed,
                **figures,
            }
        )
    baseline = next(r for r in rows if r["filter"] == "none")["value"]
    for row in rows:
        row["ratio"] = row["value"] / baseline if baseline else None
    return rows

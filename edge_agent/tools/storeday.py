"""The demo's store day: the store simulator's shoppers plus the store's own beacons, and the
downlinks HQ would have sent beforehand (registry, click-and-collect orders, planogram, lists).

The radio is ``edge_agent.tools.simulate``'s (floor plan, path loss, shadowing, packet loss, rotating
addresses), at one advertisement every ``ADVERTISING_INTERVAL_S`` per phone so the demo's trace
stays small; app customers with an order walk to the click-and-collect counter before leaving.
What they do there and elsewhere (waiting, lingering, queueing, buying, redeeming) is
``daybehaviour``'s, with the downlinks HQ sends as the day goes (``StoreDay.timed``).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from importlib import resources

from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.validation import config_from_mapping
from edge_agent.tools.daybehaviour import Collector, offers_downlink, plan_behaviour
from edge_agent.tools.simulate import SimulationSettings, simulate_store_day

# Phones advertise every second or faster; the demo hears one advertisement in four to keep
# its trace small (the simulator's default for accuracy work is one a second).
ADVERTISING_INTERVAL_S = 4.0
# The fixed beacons likewise: one advertisement a minute heard per receiver still calibrates the
# receivers within the first hour (core.calibration), at a tenth of the phones' share of the trace.
BEACON_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    customer_id: str
    identity_key: bytes
    consent_service: bool
    consent_marketing: bool
    order_id: str | None


@dataclass(slots=True)
class StoreDay:
    sightings: list[Sighting]
    customers: list[DemoCustomer]
    downlinks: list[tuple[str, bytes]] = field(default_factory=list)
    # HQ's downlinks during the day (an order handed over, a till receipt): (when, kind, payload).
    timed: list[tuple[float, str, bytes]] = field(default_factory=list)


def generate(
    seed: int = 7,
    day: date = date(2026, 11, 21),
    timezone: str = "Europe/Rome",
    shoppers: int = 240,
    app_customers: int = 30,
    open_hours: tuple[int, int] = (9, 21),
    loss: float = 0.1,
    rotation_exponent: int = 10,
) -> StoreDay:
    config = demo_config(
        {"store": {"timezone": timezone}, "identity": {"rotation_exponent": rotation_exponent}}
    )
    settings = SimulationSettings(
        shoppers=shoppers, seed=seed, day=day, open_hours=open_hours, loss=loss,
        app_share=min(1.0, app_customers / max(1, shoppers)), consent_share=0.9,
        advertising_interval_s=ADVERTISING_INTERVAL_S, beacon_interval_s=BEACON_INTERVAL_S,
        collect_zone="counter", collect_share=0.25,
    )  # fmt: skip
    simulation = simulate_store_day(config, settings)
    customers = [
        DemoCustomer(
            c.customer_id, c.identity_key, c.consent_service, c.consent_marketing,
            f"ORD-{1000 + index}" if c.collects else None,
        )
        for index, c in enumerate(simulation.customers)
    ]  # fmt: skip
    collectors = [Collector(c.customer_id, c.order_id) for c in customers if c.order_id]
    timed = plan_behaviour(
        simulation.shoppers, simulation.layout, collectors, seed, day, timezone, open_hours
    )
    # The store's fixed beacons (demo.toml [[beacons]], positioned) are the simulator's too.
    sightings = list(simulation.sightings())
    return StoreDay(sightings, customers, [*_downlinks(customers), ("offers", offers_downlink(day))], timed)


def demo_config(overrides: Mapping[str, Mapping[str, object]] | None = None) -> AgentConfig:
    """The bundled demo store (edge_agent/data/demo.toml), with keys of some sections overridden."""
    text = resources.files("edge_agent").joinpath("data/demo.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for section, values in (overrides or {}).items():
        data.setdefault(section, {}).update(values)
    return config_from_mapping(data, "edge_agent/data/demo.toml")


def _downlinks(customers: list[DemoCustomer]) -> list[tuple[str, bytes]]:
    registry = {
        "schema": "customers.v1",
        "message_id": "demo-registry-1",
        "full": True,
        "version": 1,
        "upsert": [
            {
                "customer_id": c.customer_id,
                "identity_key": c.identity_key.hex(),
                "consent": {"service": c.consent_service, "marketing": c.consent_marketing},
            }
            for c in sorted(customers, key=lambda c: c.customer_id)
        ],
    }
    orders = {
        "schema": "orders.v1",
        "message_id": "demo-orders-1",
        "orders": [
            {"order_id": c.order_id, "customer_id": c.customer_id, "status": "ready",
             "pickup_point": "Counter B", "pickup_zone": "counter", "items": ["SKU-1001"]}
            for c in sorted(customers, key=lambda c: c.customer_id) if c.order_id
        ],
    }  # fmt: skip
    planogram = {
        "schema": "planogram.v1", "message_id": "demo-planogram-1", "full": True, "version": 1,
        "items": [
            {"sku": sku, "name": name, "zone": zone, "aisle": aisle, "shelf": shelf, "in_stock": stock}
            for sku, name, zone, aisle, shelf, stock in PLANOGRAM
        ],
    }  # fmt: skip
    lists = {
        "schema": "lists.v1", "message_id": "demo-lists-1",
        "lists": [
            {"customer_id": c.customer_id, "version": 1,
             "items": [{"sku": PLANOGRAM[(i + j) % len(PLANOGRAM)][0], "source": "wishlist"}
                       for j in range(3)]}
            for i, c in enumerate(sorted(customers, key=lambda c: c.customer_id))
        ],
    }  # fmt: skip
    return [
        ("customers", json.dumps(registry).encode()),
        ("orders", json.dumps(orders).encode()),
        ("planogram", json.dumps(planogram).encode()),
        ("lists", json.dumps(lists).encode()),
    ]


# (sku, name, zone, aisle, shelf, in stock): what the demo store's planogram holds.
PLANOGRAM = [
    ("SKU-2001", "Espresso beans 1 kg", "grocery", "3", "B", True),
    ("SKU-2002", "Oat milk", "grocery", "4", "A", False),
    ("SKU-3001", "USB-C charger", "electronics", "12", "C", True),
    ("SKU-3002", "Wireless earbuds", "electronics", "12", "D", True),
    ("SKU-4001", "Rain jacket", "clothing", "20", "1", True),
    ("SKU-4002", "Wool scarf", "clothing", "21", "2", False),
]

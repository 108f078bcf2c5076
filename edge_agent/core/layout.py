"""The store's floor as the agent needs it: which receiver hangs in which zone, which zones meet.

Built once from the configuration. Presence uses it to choose zones (calibration per receiver,
adjacency so a shopper cannot jump through walls); the simulator and the evaluator use the
polygons and receiver positions to walk shoppers and to say where they really were. Pure.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from edge_agent.core.settings import AgentConfig

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class StoreLayout:
    zones: tuple[str, ...]
    zone_of_receiver: dict[str, str]
    measured_power: dict[str, int]
    dwell_s: dict[str, float]
    neighbours: dict[str, frozenset[str]]
    polygons: dict[str, tuple[Point, ...]]
    positions: dict[str, Point]
    entrance: str | None
    constrained: bool  # False when no zone declares adjacency: every move is allowed

    @classmethod
    def from_config(cls, config: AgentConfig) -> StoreLayout:
        neighbours: dict[str, set[str]] = {zone.id: set() for zone in config.zones}
        for zone in config.zones:
            for other in zone.adjacent:
                neighbours[zone.id].add(other)
                neighbours[other].add(zone.id)
        return cls(
            zones=tuple(zone.id for zone in config.zones),
            zone_of_receiver={r.id: r.zone for r in config.receivers},
            measured_power={r.id: r.measured_power_dbm for r in config.receivers},
            dwell_s={
                z.id: z.dwell_s if z.dwell_s is not None else config.presence.dwell_s for z in config.zones
            },
            neighbours={zone: frozenset(others) for zone, others in neighbours.items()},
            polygons={zone.id: tuple(zone.polygon) for zone in config.zones if zone.polygon},
            positions={r.id: r.position for r in config.receivers if r.position is not None},
            entrance=config.store.entrance_zone,
            constrained=any(neighbours.values()),
        )

    def adjacent(self, a: str, b: str) -> bool:
        return not self.constrained or a == b or b in self.neighbours.get(a, ())

    def route(self, start: str, goal: str) -> list[str]:
        """Zones on a shortest walk from ``start`` to ``goal``, both included.

        Breadth-first over the adjacency graph; without adjacency, or when ``goal`` cannot be
        reached (a misdrawn graph), the walk is the direct step, so nobody is stuck in a zone.
        """
        if start == goal:
            return [start]
        if not self.constrained:
            return [start, goal]
        previous: dict[str, str] = {}
        queue = deque([start])
        while queue:
            zone = queue.popleft()
            for other in sorted(self.neighbours.get(zone, ())):
                if other in previous or other == start:
                    continue
                previous[other] = zone
                if other == goal:
                    walk = [goal]
                    while walk[-1] != start:
                        walk.append(previous[walk[-1]])
                    return walk[::-1]
                queue.append(other)
        return [start, goal]

    def step_towards(self, current: str, goal: str) -> str:
        """The next zone on the way from ``current`` to ``goal`` (``goal`` itself when adjacent)."""
        walk = self.route(current, goal)
        return walk[1] if len(walk) > 1 else goal

    def zone_at(self, point: Point) -> str | None:
        """The zone whose polygon contains ``point`` (even-odd rule), or None in a corridor."""
        x, y = point
        for zone, corners in self.polygons.items():
            inside = False
            for (x1, y1), (x2, y2) in zip(corners, corners[1:] + corners[:1], strict=True):
                if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
                    inside = not inside
            if inside:
                return zone
        return None

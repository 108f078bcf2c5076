"""Why calibration fits medians: the same runs with the estimator swapped, for the README table.

``python -m benchmarks.calibration_estimators`` prints, for beacons all in place and for one
beacon 10 m from its configured position, every receiver's |estimate - true offset| after 20
minutes of a 6-shopper day (seeds 23, 31, 41): the default (median per pair and across beacons,
moved-beacon check), the median without the check, and a mean without it. The mean is swapped
in by replacing the calibrator's medians for the run: a measurement, not a setting.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from edge_agent.core import calibration
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import AgentConfig
from edge_agent.core.store import StoreCore
from edge_agent.tools.calibrate import true_offsets, with_power
from edge_agent.tools.demo import demo_config
from edge_agent.tools.simulate import SimulationSettings, simulate_store_day

MOVED = "ibeacon:f7826da6-4fa2-4e98-8024-bc5b71e0893e:100:6"
SEEDS = (23, 31, 41)


@contextmanager
def _estimator(name: str) -> Iterator[None]:
    median: Callable[..., float] = calibration.median
    pair_median = calibration._Pair.median
    if name == "mean":
        calibration.median = statistics.fmean  # type: ignore[assignment]
        calibration._Pair.median = lambda self: statistics.fmean(self.values)  # type: ignore[method-assign]
    try:
        yield
    finally:
        calibration.median = median  # type: ignore[assignment]
        calibration._Pair.median = pair_median  # type: ignore[method-assign]


def errors_after(seed: int, moved: bool, check: bool, minutes: float = 20) -> list[float]:
    nominal: AgentConfig = demo_config()
    if not check:
        settings = nominal.calibration.model_copy(update={"moved_threshold_db": 40.0})
        nominal = nominal.model_copy(update={"calibration": settings})
    offsets = true_offsets(nominal, seed)
    truth = with_power(nominal, offsets)
    if moved:
        beacons = [
            b.model_copy(update={"position": (27.0, 10.0)}) if b.id == MOVED else b for b in truth.beacons
        ]
        truth = truth.model_copy(update={"beacons": beacons})
    simulation = simulate_store_day(truth, SimulationSettings(shoppers=6, seed=seed, open_hours=(9, 10)))
    core = StoreCore(nominal, EventIdFactory.seeded("estimators"))
    next_tick: float | None = None
    for sighting in simulation.sightings():
        if next_tick is None:
            next_tick = sighting.ts
        if sighting.ts > simulation.opening + minutes * 60:
            break
        while sighting.ts >= next_tick:
            core.tick(next_tick)
            next_tick += 1.0
        core.observe(sighting)
    return [abs((e.offset_db or 99.0) - offsets[e.receiver]) for e in core.calibration.estimates()]


def main() -> int:
    print("| beacons | estimator | worst receiver | mean over receivers |")
    print("|---|---|---|---|")
    for label, moved in (("all in place", False), ("one beacon 10 m from its configured place", True)):
        for name, check in (("median", True), ("median", False), ("mean", False)):
            with _estimator(name):
                runs = [errors_after(seed, moved, check) for seed in SEEDS]
            worst = max(max(r) for r in runs)
            mean = statistics.fmean(statistics.fmean(r) for r in runs)
            what = f"{name} + moved check (the default)" if check else f"{name}, no moved check"
            print(f"| {label} | {what} | {worst:.2f} | {mean:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

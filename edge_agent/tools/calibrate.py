"""``edge-agent calibrate``: a recorded trace through the core's calibration, for a technician.

The trace (``scan --record``, or ``simulate``) is run through the same pure core the daemon runs
(``core.calibration`` inside ``StoreCore``), with the scheduler's ticks in simulated time, so
the figures are the ones the daemon would reach on that trace: per receiver the configured and
estimated offset, the readings behind it, the residual and a confidence, the beacons' checks and
the events HQ would have received. The suggested values can be written as TOML for the
``[[receivers]]`` entries (``measured_power_dbm``), which is what a technician commits.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

from edge_agent.core.calibration import REFERENCE_POWER_DBM, BeaconCheck, ReceiverEstimate
from edge_agent.core.events import BeaconMessage, Message, ReceiverMessage
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.store import StoreCore
from edge_agent.tools.evaluate import feed_with_ticks


@dataclass(slots=True)
class CalibrationReport:
    receivers: list[ReceiverEstimate]
    beacons: list[BeaconCheck]
    events: list[Message] = field(default_factory=list)
    sightings: int = 0
    active: bool = True


def calibrate_trace(config: AgentConfig, sightings: Iterable[Sighting]) -> CalibrationReport:
    """Run ``sightings`` through the core with a tick every ``scheduler.tick_interval_s``."""
    core = StoreCore(config, EventIdFactory.seeded("calibrate"))
    fed = feed_with_ticks(core, sightings, config.scheduler.tick_interval_s)
    # One last fit with everything the trace held (the window ends at its last sighting).
    events = _calibration_events([*fed.messages, *core.tick(fed.last + config.calibration.update_interval_s)])
    calibration = core.calibration
    return CalibrationReport(
        calibration.estimates(), calibration.beacon_states(), events, fed.count, calibration.active
    )


def _calibration_events(messages: list[Message]) -> list[Message]:
    return [m for m in messages if isinstance(m, ReceiverMessage) or _is_beacon_check(m)]


def _is_beacon_check(message: Message) -> bool:
    return isinstance(message, BeaconMessage) and message.event in ("moved", "in_place")


def true_offsets(config: AgentConfig, seed: int, spread_db: float = 6.0) -> dict[str, float]:
    """Each receiver's true 1 m power off the nominal, uniform in +-spread_db, whole dB."""
    rng = random.Random(f"{seed}:receiver-offsets")
    return {r.id: float(round(rng.uniform(-spread_db, spread_db))) for r in config.receivers}


def with_power(config: AgentConfig, offsets: dict[str, float]) -> AgentConfig:
    """``config`` with each receiver's measured power set to nominal + its offset."""
    receivers = [
        r.model_copy(update={"measured_power_dbm": round(REFERENCE_POWER_DBM + offsets.get(r.id, 0.0))})
        for r in config.receivers
    ]
    return config.model_copy(update={"receivers": receivers})


def with_calibration(config: AgentConfig, enabled: bool) -> AgentConfig:
    return config.model_copy(
        update={"calibration": config.calibration.model_copy(update={"enabled": enabled})}
    )


def suggested_toml(config: AgentConfig, estimates: Iterable[ReceiverEstimate]) -> str:
    """``[[receivers]]`` entries with the estimated ``measured_power_dbm`` (whole dB), in the
    configuration's order; receivers without an estimate keep their configured value."""
    estimated = {e.receiver: e for e in estimates}
    lines = [
        "# Receivers' 1 m power as estimated by `edge-agent calibrate` from the fixed beacons.",
        "# Replace the receivers' measured_power_dbm with these (the other keys are unchanged).",
    ]
    for receiver in config.receivers:
        estimate = estimated.get(receiver.id)
        offset = None if estimate is None else estimate.offset_db
        power = receiver.measured_power_dbm if offset is None else round(REFERENCE_POWER_DBM + offset)
        note = (
            "not estimated: kept as configured"
            if offset is None
            else f"{estimate.samples} readings of {estimate.beacons} beacons"  # type: ignore[union-attr]
        )
        lines += ["", "[[receivers]]", f'id = "{receiver.id}"', f'zone = "{receiver.zone}"']
        if receiver.position is not None:
            lines.append(f"position = [{receiver.position[0]:g}, {receiver.position[1]:g}]")
        if receiver.adapter is not None:
            lines.append(f'adapter = "{receiver.adapter}"')
        if receiver.beacon is not None:
            lines.append(f'beacon = "{receiver.beacon}"')
        lines.append(f"measured_power_dbm = {power}  # {note}")
    return "\n".join(lines) + "\n"

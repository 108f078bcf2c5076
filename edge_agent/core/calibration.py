"""Receivers calibrated online from the store's positioned fixed beacons. Pure; time is an argument.

Zone choice compares receivers, so a receiver that reads 5 dB hot pulls shoppers into its zone.
A fixed beacon at a known position with a known 1 m power gives, at every receiver r that hears
it, one equation of the log-distance model::

    rssi = beacon power + (receiver power - REFERENCE_POWER_DBM) - 10 n log10(distance) + noise

so every reading is a noisy sample of the receiver's own 1 m power. The beacons' known powers fix
the gauge (without them only differences between receivers would be known).

The fit, chosen by measurement (benchmarks/README.md, "Calibration"):
- per (receiver, beacon) pair, the median of the samples of the last ``window_s``: shadowing is
  heavy-tailed indoors and a median ignores a burst of reflections; the window lets a drifted
  receiver be re-estimated within half of it;
- per receiver, the median over its usable pairs, so one beacon out of place cannot move it by
  much, and the pairs the model puts near the sensitivity floor are left out (their weak
  samples are lost, which biases what is left upwards);
- a beacon whose pair medians disagree with every receiver's other beacons by more than
  ``moved_threshold_db`` moved or was replaced: it is reported and left out of the fit. A receiver
  that drifted instead shifts all its pairs alike, which its other beacons absorb.
The hot path (``heard``) appends one reading to a bounded deque; the fit runs in ``tick`` every
``update_interval_s`` and refreshes only the pairs with new or expired readings. A pair too weak
to use keeps no readings at all (in the demo store 53 of 90 pairs): it only tells that its
receiver still hears, which is what made the fit cost about half of what it did when every
pair was kept and expired.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Final, Literal

from edge_agent.core.frames import AltBeacon, EddystoneUid, IBeacon
from edge_agent.core.layout import Point
from edge_agent.core.settings import AgentConfig, CalibrationSettings

# The 1 m RSSI of a typical phone at a reference receiver, the iBeacon convention; a beacon's
# measured power is what that receiver reads from it at 1 m.
REFERENCE_POWER_DBM: Final = -59.0
# Readings a pair keeps at most, whatever the beacon's rate: bounds memory at ~10 Hz beacons.
MAX_PAIR_SAMPLES: Final = 512
# Distances below this are the model's singularity, not geometry (a receiver's own beacon).
MIN_DISTANCE_M: Final = 0.5
# Outside what any receiver reports: a frame with such an RSSI is broken, not a strong reading.
PLAUSIBLE_RSSI: Final = (-120, 10)
# Shadowing of one reading indoors (3-6 dB), and a median of medians' standard error in units of
# sigma / sqrt(all readings) (1.25 for a median, twice): what the drift test calls noise.
READING_SIGMA_DB: Final = 4.0
MEDIAN_OF_MEDIANS_SE: Final = 1.5625
# An estimate that stays within this for half a window after a drift has re-converged.
SETTLED_DB: Final = 1.0
# Readings a pair needs before it takes part in a beacon's check: at 20 the pair's median is
# within about 1 dB at sigma 4 dB, so a first minute's noise does not look like a moved beacon.
CHECK_MIN_PAIR_SAMPLES: Final = 20
# Consecutive fits a beacon must look moved (or back in place) before it is reported: at a fit
# a minute, within three minutes, and a single unlucky fit is not enough.
CHECK_CONFIRMATIONS: Final = 3

ReceiverState = Literal["calibrated", "converging", "no_beacons", "silent", "drifting", "unplaced"]
ReceiverEventKind = Literal["drift", "recalibrated", "silent", "hearing"]
BeaconEventKind = Literal["moved", "in_place"]


@dataclass(frozen=True, slots=True)
class PlacedBeacon:
    beacon_id: str
    position: Point
    power_dbm: float | None  # None: learnt from the beacon's frames


@dataclass(frozen=True, slots=True)
class ReceiverEvent:
    receiver: str
    event: ReceiverEventKind
    ts: float
    offset_db: float | None
    previous_offset_db: float | None


@dataclass(frozen=True, slots=True)
class BeaconResidualEvent:
    beacon_id: str
    event: BeaconEventKind
    ts: float
    residuals_db: dict[str, float]


CalibrationEvent = ReceiverEvent | BeaconResidualEvent


BeaconCheckState = Literal["in_place", "moved", "single_receiver", "unheard"]


@dataclass(frozen=True, slots=True)
class BeaconCheck:
    """A positioned beacon as the fit sees it; one heard by a single receiver cannot be checked."""

    beacon_id: str
    state: BeaconCheckState
    receivers: int
    residuals_db: dict[str, float] | None


@dataclass(frozen=True, slots=True)
class ReceiverEstimate:
    """What status and ``edge-agent calibrate`` show for one receiver.

    Offsets are against REFERENCE_POWER_DBM: ``configured_offset_db`` is the configuration's
    ``measured_power_dbm`` + 59, ``offset_db`` the estimated one (None until estimated)."""

    receiver: str
    state: ReceiverState
    configured_offset_db: float
    offset_db: float | None
    samples: int
    beacons: int
    residual_db: float | None
    confidence: float
    rejected: int


class _Pair:
    """One usable (receiver, beacon) pair's readings in arrival order, bounded.

    Times and values in two deques of one bound, so they drop their oldest together. The
    sighting path only appends and marks the pair fresh; the fit drops what left the window and
    takes the median with one C-level sort of the values (no tuples unpacked in Python)."""

    __slots__ = ("fresh", "times", "values")

    def __init__(self) -> None:
        self.times: deque[float] = deque(maxlen=MAX_PAIR_SAMPLES)
        self.values: deque[float] = deque(maxlen=MAX_PAIR_SAMPLES)
        self.fresh = False  # readings arrived since the last fit

    def refresh(self, oldest: float) -> bool:
        """Drop readings older than ``oldest``; True if the pair changed since the last fit."""
        times = self.times
        changed = self.fresh
        self.fresh = False
        if times and times[0] < oldest:
            values = self.values
            while times and times[0] < oldest:
                times.popleft()
                values.popleft()
            changed = True
        return changed

    def median(self) -> float:
        ordered = sorted(self.values)
        n = len(ordered)
        middle = n // 2
        return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2

    def __len__(self) -> int:
        return len(self.values)


BeaconFrame = IBeacon | EddystoneUid | AltBeacon


def announced_power(frame: BeaconFrame) -> float:
    """The 1 m power a beacon's frame announces (Eddystone's is at 0 m: 41 dB more)."""
    if isinstance(frame, IBeacon):
        return float(frame.measured_power)
    if isinstance(frame, AltBeacon):
        return float(frame.reference_rssi)
    return float(frame.tx_power - 41)


@dataclass(slots=True)
class _Receiver:
    receiver_id: str
    position: Point | None
    configured_dbm: float
    estimate_dbm: float | None = None  # applied to presence once samples >= min_samples
    reference_dbm: float = REFERENCE_POWER_DBM  # the estimate, else the configured value
    history: deque[tuple[float, float]] = field(default_factory=deque)
    drifting_since: float | None = None
    restored_dbm: float | None = None  # kept across a restart: the reference for the first fit
    armed_at: float | None = None  # drift is judged from then on (a window after the first fit)
    last_heard: float | None = None
    silent: bool = False
    samples: int = 0
    beacons: int = 0
    residual_db: float | None = None
    confidence: float = 0.0
    rejected: int = 0


# A pair's path constant, its readings (None: too weak to use, only heard) and its receiver.
_Hot = tuple[float, _Pair | None, _Receiver]


class Calibrator:
    """Per-receiver 1 m power from fixed beacons: ``heard`` per beacon reading, ``tick`` to refit."""

    def __init__(self, config: AgentConfig) -> None:
        self._receivers: dict[str, _Receiver] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}
        self._moved: dict[str, dict[str, float]] = {}
        self._moved_changed = False  # a beacon left or rejoined the fit: every receiver refits
        self._suspect: dict[str, int] = {}  # beacon -> consecutive fits its state looked changed
        self.next_fit_at = -math.inf  # the first tick fits
        self._fitted_at: float | None = None
        self._hearing: dict[str, int] = {}  # beacon -> receivers with a usable pair
        self._heard_until = -math.inf  # the last beacon reading at any receiver, at the last fit
        self.reconfigure(config)

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed (``core.wallclock``): every reading, receiver
        history and deadline moves with the clock, so a step forward does not age the window out
        (every receiver "silent", the estimates refitted from nothing) and a step back does not
        keep readings an hour past their window; the estimates themselves are untouched."""
        for pair in self._pairs.values():
            pair.times = deque((t + delta_s for t in pair.times), maxlen=pair.times.maxlen)
        for state in self._receivers.values():
            state.history = deque((t + delta_s, v) for t, v in state.history)
            state.drifting_since = _moved_by(state.drifting_since, delta_s)
            state.armed_at = _moved_by(state.armed_at, delta_s)
            state.last_heard = _moved_by(state.last_heard, delta_s)
        self.next_fit_at += delta_s
        self._heard_until += delta_s
        self._fitted_at = _moved_by(self._fitted_at, delta_s)

    def reconfigure(self, config: AgentConfig) -> None:
        """New positions, powers or knobs; estimates and samples of what stays are kept."""
        self._settings: CalibrationSettings = config.calibration
        self._exponent = config.presence.path_loss_exponent
        self._beacons = {
            b.id: PlacedBeacon(
                b.id, b.position, None if b.measured_power_dbm is None else b.measured_power_dbm
            )
            for b in config.beacons
            if b.position is not None
        }
        receivers = {r.id: r for r in config.receivers}
        for receiver in config.receivers:  # a receiver's own beacon hangs where it does
            if receiver.beacon is not None and receiver.position is not None:
                beacon = next((b for b in config.beacons if b.id == receiver.beacon), None)
                if beacon is not None and beacon.position is None:
                    power = beacon.measured_power_dbm
                    self._beacons[beacon.id] = PlacedBeacon(beacon.id, receiver.position, power)
        self._learnt_power: dict[str, float] = getattr(self, "_learnt_power", {})
        kept = self._receivers
        self._receivers = {}
        for rid, settings in receivers.items():
            state = kept.get(rid) or _Receiver(rid, settings.position, float(settings.measured_power_dbm))
            state.position, state.configured_dbm = settings.position, float(settings.measured_power_dbm)
            if state.estimate_dbm is None:
                state.reference_dbm = state.configured_dbm
            self._receivers[rid] = state
        self._distance = {
            (rid, bid): max(MIN_DISTANCE_M, math.dist(r.position, b.position))
            for rid, r in self._receivers.items()
            if r.position is not None
            for bid, b in self._beacons.items()
        }
        before: dict[tuple[str, str], float] = getattr(self, "_corrections", {})
        self._corrections: dict[tuple[str, str], float] = {}
        self._max_residual = config.calibration.max_residual_db
        # A pair's readings were converted with its path constant: they stay only if it did (and
        # the pair is still strong enough to use).
        self._pairs = {
            k: v
            for k, v in self._pairs.items()
            if k in self._distance and before.get(k) == self._correction(*k) and self._usable(*k)
        }
        for pair in self._pairs.values():
            pair.fresh = True  # every median is taken again
        self._medians: dict[str, dict[str, tuple[float, int]]] = {}
        self._hot: dict[tuple[str, str], _Hot | None] = {}
        self.active = config.calibration.enabled and bool(self._beacons)

    # ------------------------------------------------------------------ readings

    def heard(self, beacon_id: str, receiver: str, rssi: int, ts: float, frame: BeaconFrame) -> bool:
        """One reading of a fleet beacon's ``frame``; False when absurd (the caller counts it).

        The hot path: one dictionary look-up of the pair's constants, a few comparisons, two
        appends. A beacon or receiver without a position is ignored here (the config check names
        it)."""
        key = (receiver, beacon_id)
        hot = self._hot.get(key)
        if hot is None:
            if key in self._hot:
                return True  # known not to be placed
            hot = self._new_pair(key, frame)
            if hot is None:
                return True
        correction, pair, state = hot
        # The receiver's 1 m power as this one reading says it.
        sample = rssi + correction
        if not PLAUSIBLE_RSSI[0] <= rssi <= PLAUSIBLE_RSSI[1] or not (
            -self._max_residual <= sample - state.reference_dbm <= self._max_residual
        ):
            state.rejected += 1
            return False
        last = state.last_heard
        if last is None or ts > last:
            state.last_heard = ts
        if pair is not None:
            pair.times.append(ts)
            pair.values.append(sample)
            pair.fresh = True
        return True

    def _new_pair(self, key: tuple[str, str], frame: BeaconFrame) -> _Hot | None:
        receiver, beacon_id = key
        state = self._receivers.get(receiver)
        if state is None:
            return None  # a receiver the configuration lacks: not remembered (ids from the network)
        if key not in self._distance:
            self._hot[key] = None
            return None
        if self._beacons[beacon_id].power_dbm is None:
            self._learnt_power.setdefault(beacon_id, announced_power(frame))
        pair = self._pairs.get(key)
        if pair is None and self._usable(receiver, beacon_id):
            pair = self._pairs[key] = _Pair()
        hot = self._hot[key] = (self._correction(receiver, beacon_id), pair, state)
        return hot

    def _usable(self, receiver: str, beacon_id: str) -> bool:
        """Whether a pair is strong enough to fit. Too weak a pair is biased up (its weak readings
        are lost below the floor). Judged by the RSSI the model expects at the receiver's
        configured power: not by the pair's own median, which admits a far pair exactly when its
        noise is high, nor by the estimate, which a bad beacon could pull low enough to shut out
        all the good ones. Fixed by the configuration, so decided once, when the pair is first
        heard: a pair too weak keeps no readings (it only says its receiver still hears)."""
        expected = self._receivers[receiver].configured_dbm - self._correction(receiver, beacon_id)
        return expected >= self._settings.min_rssi_dbm

    # ------------------------------------------------------------------ fitting

    def tick(self, now: float) -> list[CalibrationEvent]:
        """Refit every ``update_interval_s``; the events say what changed for HQ."""
        if not self.active:
            return []
        if now < self.next_fit_at:
            return []
        self.next_fit_at = now + self._settings.update_interval_s
        self._fitted_at = now
        return self._fit(now)

    def fitted_at(self, now: float) -> bool:
        """Whether the last ``tick`` at ``now`` refitted (so the new powers should be applied)."""
        return self._fitted_at == now

    def _fit(self, now: float) -> list[CalibrationEvent]:
        """Refit what changed: only pairs with new or expired readings get a new median, and
        only receivers with such a pair are refitted (a beacon every few seconds at each of a
        dozen receivers leaves most pairs unchanged between two fits)."""
        changed = self._refresh_pairs(now)
        heard = [s.last_heard for s in self._receivers.values() if s.last_heard is not None]
        self._heard_until = max(heard, default=now)
        events: list[CalibrationEvent] = []
        if changed:
            self._hearing = {}
            for pairs in self._medians.values():
                for bid in pairs:
                    self._hearing[bid] = self._hearing.get(bid, 0) + 1
            events += self._check_beacons(self._medians, now)
        moved = self._moved
        for rid, state in self._receivers.items():
            events += self._check_hearing(state, now)
            if rid in changed or state.estimate_dbm is None or self._moved_changed:
                pairs = self._medians.get(rid, {})
                usable = {b: v for b, v in pairs.items() if b not in moved} if moved else pairs
                events += self._update_receiver(state, usable, now)
            else:
                events += self._check_silent(state, now)
        self._moved_changed = False
        return events

    def _refresh_pairs(self, now: float) -> set[str]:
        """New medians of the pairs with new or expired readings; the receivers they change."""
        oldest = now - self._settings.window_s
        medians = self._medians
        changed: set[str] = set()
        for key, pair in self._pairs.items():
            if not pair.refresh(oldest):
                continue
            rid, bid = key
            pairs = medians.get(rid)
            if pairs is None:
                pairs = medians[rid] = {}
            if pair.values:
                pairs[bid] = (pair.median(), len(pair.values))
            else:
                pairs.pop(bid, None)
            changed.add(rid)
        return changed

    def _correction(self, receiver: str, beacon_id: str) -> float:
        """What turns a reading of the pair into the receiver's 1 m power (computed once a pair)."""
        correction = self._corrections.get((receiver, beacon_id))
        if correction is None:
            distance = self._distance[(receiver, beacon_id)]
            correction = (
                REFERENCE_POWER_DBM - self._power(beacon_id) + 10.0 * self._exponent * math.log10(distance)
            )
            self._corrections[(receiver, beacon_id)] = correction
        return correction

    def _power(self, beacon_id: str) -> float:
        power = self._beacons[beacon_id].power_dbm
        if power is not None:
            return power
        return self._learnt_power.get(beacon_id, REFERENCE_POWER_DBM)

    def _check_beacons(
        self, medians: Mapping[str, Mapping[str, tuple[float, int]]], now: float
    ) -> Iterable[BeaconResidualEvent]:
        """Each beacon's pair medians against each receiver's other (unmoved) beacons."""
        threshold = self._settings.moved_threshold_db
        for bid in self._beacons:
            residuals: dict[str, float] = {}
            for rid, pairs in medians.items():
                if bid not in pairs or pairs[bid][1] < CHECK_MIN_PAIR_SAMPLES:
                    continue
                others = [
                    v for b, (v, n) in pairs.items()
                    if b != bid and b not in self._moved and n >= CHECK_MIN_PAIR_SAMPLES
                ]  # fmt: skip
                if others:
                    residuals[rid] = round(pairs[bid][0] - median(others), 2)
            if len(residuals) < 2:
                self._suspect.pop(bid, None)
                continue  # heard by one receiver (or none): nothing to compare it against
            off = [abs(r) for r in residuals.values()]
            was_moved = bid in self._moved
            # Off at (nearly) every receiver: a receiver about as far from the beacon's new place
            # as from its old one sees little, so two in three off by half the threshold will do.
            far_off = sum(r > threshold / 2 for r in off)
            looks_moved = 3 * far_off >= 2 * len(off) and median(off) > threshold
            looks_in_place = max(off) < threshold / 2
            if was_moved:
                self._moved[bid] = residuals
            if (looks_moved and not was_moved) or (looks_in_place and was_moved):
                self._suspect[bid] = self._suspect.get(bid, 0) + 1
            else:
                self._suspect.pop(bid, None)
            if self._suspect.get(bid, 0) >= CHECK_CONFIRMATIONS:
                del self._suspect[bid]
                self._moved_changed = True
                if was_moved:
                    del self._moved[bid]
                    yield BeaconResidualEvent(bid, "in_place", now, residuals)
                else:
                    self._moved[bid] = residuals
                    yield BeaconResidualEvent(bid, "moved", now, residuals)

    def _update_receiver(
        self, state: _Receiver, pairs: Mapping[str, tuple[float, int]], now: float
    ) -> list[ReceiverEvent]:
        settings = self._settings
        events = self._check_silent(state, now)
        if events:
            return events  # just went silent
        samples = sum([n for _, n in pairs.values()])
        if state.silent:
            return events
        state.beacons = len(pairs)
        if not pairs or samples < settings.min_samples:
            state.samples = samples
            return events
        values = [v for v, _ in pairs.values()]
        estimate = median(values)
        state.samples = samples
        state.residual_db = (
            round(max(max(values) - estimate, estimate - min(values)), 2) if len(values) > 1 else None
        )
        # Spread of a median ~ 1.25 sigma / sqrt(n): sigma from the pairs' scatter, 4 dB if alone.
        spread = (state.residual_db or 4.0) if len(values) > 1 else 4.0
        stderr = 1.25 * max(spread, 1.0) / math.sqrt(samples)
        state.confidence = round(max(0.0, min(1.0, 1.0 - stderr)), 3)
        previous = state.estimate_dbm
        state.estimate_dbm = state.reference_dbm = estimate
        events += self._check_drift(state, previous, now)
        return events

    def _check_hearing(self, state: _Receiver, now: float) -> list[ReceiverEvent]:
        """A silent receiver that hears beacons again, strong enough to fit or not (a receiver
        whose beacons are all far hears them as well as one whose beacons are near)."""
        if (
            not state.silent
            or state.last_heard is None
            or self._heard_until - state.last_heard > self._settings.silent_after_s
        ):
            return []
        state.silent = False
        return [ReceiverEvent(state.receiver_id, "hearing", now, self._offset(state), None)]

    def _check_silent(self, state: _Receiver, now: float) -> list[ReceiverEvent]:
        """A receiver that heard beacons and then none for ``silent_after_s`` while the store
        still heard them at other receivers.

        Counted against the last beacon reading at any receiver, not the clock: when every
        receiver goes quiet at once it is the agent that stopped hearing (a recorded trace that
        ends, the receivers' broker down, a store that powers its nodes off at night), not each
        receiver going deaf, and nine ``silent`` events would say the wrong thing (the beacons'
        own health still reports them missing)."""
        if (
            state.silent
            or state.last_heard is None
            or self._heard_until - state.last_heard <= self._settings.silent_after_s
        ):
            return []
        state.silent = True
        return [ReceiverEvent(state.receiver_id, "silent", now, self._offset(state), None)]

    def _check_drift(self, state: _Receiver, previous: float | None, now: float) -> list[ReceiverEvent]:
        settings = self._settings
        estimate = state.estimate_dbm
        assert estimate is not None
        history = state.history
        while history and history[0][0] < now - settings.drift_window_s:
            history.popleft()
        if state.drifting_since is not None:
            # Re-converged once the estimate has held still for half a window.
            if previous is None or (history and abs(estimate - history[0][1]) > SETTLED_DB):
                history.clear()
            history.append((now, estimate))
            if now - history[0][0] >= settings.window_s / 2:
                state.drifting_since = None
                return [ReceiverEvent(state.receiver_id, "recalibrated", now, self._offset(state), None)]
            return []
        # An estimate younger than a window still moves as its first readings are joined by
        # more (at a beacon a minute, by 2-3 dB): it becomes a reference only once a whole
        # window stands behind it. A value kept across a restart waits for that too.
        if state.armed_at is None:
            state.armed_at = now + settings.window_s
        if now < state.armed_at:
            return []
        reference = history[0][1] if history else state.restored_dbm
        state.restored_dbm = None
        history.append((now, estimate))
        # A sparse estimate is noisy: a move must also be four standard errors of the difference
        # of two estimates, so a receiver with few readings is not a drift alarm every hour.
        stderr = MEDIAN_OF_MEDIANS_SE * READING_SIGMA_DB / math.sqrt(max(1, state.samples))
        threshold = max(settings.drift_threshold_db, 4 * math.sqrt(2) * stderr)
        if reference is not None and abs(estimate - reference) > threshold:
            state.drifting_since = now
            history.clear()
            history.append((now, estimate))
            return [
                ReceiverEvent(
                    state.receiver_id, "drift", now, self._offset(state),
                    round(reference - REFERENCE_POWER_DBM, 2),
                )
            ]  # fmt: skip
        return []

    @staticmethod
    def _offset(state: _Receiver) -> float | None:
        if state.estimate_dbm is None:
            return None
        return round(state.estimate_dbm - REFERENCE_POWER_DBM, 2)

    # ------------------------------------------------------------------ results

    def power(self) -> dict[str, float]:
        """Each receiver's 1 m power for zone choice: estimated where known, else configured."""
        power = {}
        for rid, state in self._receivers.items():
            estimated = self.active and state.estimate_dbm is not None
            power[rid] = (
                state.estimate_dbm if estimated and state.estimate_dbm is not None else state.configured_dbm
            )
        return power

    def moved_beacons(self) -> list[str]:
        return sorted(self._moved)

    def beacon_states(self) -> list[BeaconCheck]:
        """Each positioned beacon: how many receivers hear it well enough to use it (at the last
        fit), and whether it can be checked."""
        hearing = self._hearing
        rows = []
        for bid in self._beacons:
            count = hearing.get(bid, 0)
            state: BeaconCheckState = (
                "moved" if bid in self._moved
                else "unheard" if count == 0
                else "single_receiver" if count == 1
                else "in_place"
            )  # fmt: skip
            rows.append(BeaconCheck(bid, state, count, self._moved.get(bid)))
        return rows

    def estimates(self) -> list[ReceiverEstimate]:
        rows = []
        for rid, state in self._receivers.items():
            rows.append(
                ReceiverEstimate(
                    receiver=rid,
                    state=self._state(state),
                    configured_offset_db=round(state.configured_dbm - REFERENCE_POWER_DBM, 2),
                    offset_db=self._offset(state),
                    samples=state.samples,
                    beacons=state.beacons,
                    residual_db=state.residual_db,
                    confidence=state.confidence if state.estimate_dbm is not None else 0.0,
                    rejected=state.rejected,
                )
            )
        return rows

    def _state(self, state: _Receiver) -> ReceiverState:
        if state.position is None:
            return "unplaced"
        if state.silent:
            return "silent"
        if state.drifting_since is not None:
            return "drifting"
        if state.estimate_dbm is not None:  # estimated here, or restored and refreshed as readings come
            return "calibrated"
        if state.last_heard is None:
            return "no_beacons"
        return "converging"

    # ------------------------------------------------------------------ across restarts

    def records(self) -> list[tuple[str, float, int]]:
        """(receiver, estimated 1 m power, samples) of every estimated receiver, to keep."""
        return [
            (rid, round(s.estimate_dbm, 3), s.samples)
            for rid, s in self._receivers.items()
            if s.estimate_dbm is not None
        ]

    def restore(self, records: Iterable[tuple[str, float, int]]) -> None:
        """Estimates kept before a restart apply at once; new readings refine them."""
        for rid, power, samples in records:
            state = self._receivers.get(rid)
            if state is not None and math.isfinite(power):
                state.estimate_dbm = state.restored_dbm = state.reference_dbm = float(power)
                state.samples = int(samples)
                state.history.clear()


def calibration_warnings(config: AgentConfig) -> list[tuple[str, str]]:
    """(TOML key, why) of what keeps calibration from covering the store, for ``config check``.

    Valid, so not errors: a beacon without a position is still watched for health, and a store
    may calibrate only some receivers. But a technician should know which ones are not."""
    if not config.calibration.enabled:
        return []
    placed = [b for b in config.beacons if b.position is not None]
    own = {r.beacon for r in config.receivers if r.beacon is not None}
    if not placed and not own:
        return []
    warnings = []
    for index, beacon in enumerate(config.beacons):
        if beacon.position is None and beacon.id not in own:
            warnings.append(
                (
                    f"beacons[{index}].position",
                    f"{beacon.id!r} has no position: watched for health, not calibrating",
                )
            )
    exponent = config.presence.path_loss_exponent
    floor = config.calibration.min_rssi_dbm
    for index, receiver in enumerate(config.receivers):
        if receiver.position is None:
            warnings.append(
                (f"receivers[{index}].position", f"{receiver.id!r} has no position: it cannot be calibrated")
            )
            continue
        position = receiver.position
        gain = receiver.measured_power_dbm - REFERENCE_POWER_DBM
        heard = [
            b for b in placed
            if b.position is not None and b.id != receiver.beacon
            and (b.measured_power_dbm or REFERENCE_POWER_DBM) + gain
            - 10 * exponent * math.log10(max(MIN_DISTANCE_M, math.dist(position, b.position))) >= floor
        ]  # fmt: skip
        if not heard:
            warnings.append(
                (
                    f"receivers[{index}].position",
                    f"{receiver.id!r} hears no positioned beacon above calibration.min_rssi_dbm "
                    f"({floor} dBm) by the path-loss model: it cannot be calibrated",
                )
            )
    return warnings


def _moved_by(at: float | None, delta_s: float) -> float | None:
    return None if at is None else at + delta_s

"""The agent's judgement of its own wall clock. Pure: readings come in as values.

Store boards often have no real-time clock: they boot with the time saved at shutdown and NTP
steps it later, or an operator sets it by hand. The agent therefore keeps its own *agent time*,
``monotonic + offset``, which only moves the way the monotonic clock does, and this judge decides
the offset:

- A wall reading within ``step_tolerance_s`` of agent time is followed silently (NTP slewing,
  drift: milliseconds per tick, never enough to end a visit).
- Further away is a *step*: counted, kept as the last step, and followed too (agent time takes
  the new wall time) but as a decision the caller applies to everything that holds a time
  (``StoreCore.shift``), so durations, open visits and TTLs never see it.
- The clock is *trusted* when the system says NTP is synchronised; with no such source, until a
  step or a disagreement is seen. Until trusted, what is reported is marked so HQ can tell.
- Phones' tokens say what time the phones think it is (``TokenEvidence``): when several
  customers' tokens resolve only in windows away from the box's, the box, not the phones, is
  wrong. Each such sighting bounds the error to one window's width; Marzullo's algorithm (the
  interval intersection NTP uses, which tolerates a minority of wrong sources) narrows the bounds
  to seconds once a rotation boundary has been heard. Once the estimate is known, an untrusted
  clock is corrected by it, so customers resolve again and reports carry the corrected time.
- Remote receivers (ESP32 nodes on SNTP) date what they hear with their own clocks; their
  offsets from agent time are learned (``core.receiverclocks``). When several of them agree
  on one offset while the box says NTP has *not* synchronised it, the box is the one off, and is
  corrected by them; with no NTP state at all they only raise the alarm (they may share a bad
  SNTP server, and the phones are the independent witness then).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field

# Sources of the estimate, as they appear in status.
SOURCE_SYSTEM = "system"  # the wall clock as the operating system keeps it
SOURCE_TOKENS = "tokens"  # phones' token windows (TokenEvidence)
SOURCE_RECEIVERS = "receivers"  # remote receivers' clocks (core.receiverclocks)


@dataclass(frozen=True, slots=True)
class ClockReading:
    """One look at the system's clocks: the wall, the monotonic clock and whether the system says
    its wall clock is NTP-synchronised (None: no way to tell on this box)."""

    wall: float
    monotonic: float
    synced: bool | None = None


@dataclass(frozen=True, slots=True)
class ClockStep:
    """A wall-clock step the judge saw: when (agent time after it) and by how much."""

    at: float
    size_s: float


@dataclass(frozen=True, slots=True)
class ClockState:
    """What status reports: whether the clock is trusted, and why not."""

    trusted: bool
    synced: bool | None
    steps: int
    last_step: ClockStep | None
    # Best estimate of true time minus the system wall clock (None: no evidence), its
    # uncertainty (half the width of the interval it is the middle of) and where it came from.
    estimated_error_s: float | None
    estimate_uncertainty_s: float | None
    correction_s: float  # what agent time adds to the system wall clock now
    sources: tuple[str, ...]
    alarm: str | None


@dataclass(frozen=True, slots=True)
class Interval:
    """A bound on the clock error (true time minus box time), from one piece of evidence."""

    low: float
    high: float


def marzullo(intervals: list[Interval]) -> tuple[Interval, int] | None:
    """The smallest interval contained in the most of ``intervals``, and how many that is.

    Marzullo's algorithm: sort the ends, sweep, and keep the stretch where the count of open
    intervals peaks. A minority of wrong sources (a phone with its own clock off) cannot move it.
    """
    if not intervals:
        return None
    edges = sorted([(i.low, -1) for i in intervals] + [(i.high, +1) for i in intervals])
    best, count, best_low, best_high = 0, 0, 0.0, 0.0
    for index, (offset, kind) in enumerate(edges):
        count -= kind
        if count > best and kind == -1:
            best, best_low = count, offset
            best_high = edges[index + 1][0] if index + 1 < len(edges) else offset
    return Interval(best_low, best_high), best


class TokenEvidence:
    """What customers' tokens say about the box clock.

    A token of window ``w`` (``2**k`` s long) heard at box time ``t`` says that the phone's clock,
    and so true time if the phone is right, was in ``[w * 2**k, (w + 1) * 2**k)``: the box error
    is in ``[w * 2**k - t, (w + 1) * 2**k - t)``. One phone has one clock, so its sightings'
    bounds are intersected; once it has been heard on both sides of a rotation the bounds are as
    close as its sightings around the boundary. Customers count one vote each, however often they
    advertise, and only the most recent ``max_customers`` are kept.
    """

    def __init__(self, rotation_exponent: int, max_customers: int = 256) -> None:
        self._width = float(1 << rotation_exponent)
        self._max_customers = max_customers
        self._by_customer: dict[str, Interval] = {}

    def heard(self, customer_id: str, window: int, box_time: float) -> None:
        start = window * self._width
        bound = Interval(start - box_time, start + self._width - box_time)
        kept = self._by_customer.pop(customer_id, None)  # re-inserted last: recent customers stay
        if kept is not None:
            narrowed = Interval(max(kept.low, bound.low), min(kept.high, bound.high))
            # Bounds that do not meet: the phone's own clock moved; start again from this one.
            bound = narrowed if narrowed.low <= narrowed.high else bound
        elif len(self._by_customer) >= self._max_customers:
            del self._by_customer[next(iter(self._by_customer))]
        self._by_customer[customer_id] = bound

    def estimate(self) -> tuple[Interval, int] | None:
        """The error interval most customers agree on (Marzullo), and how many customers do."""
        return marzullo(list(self._by_customer.values()))

    def clear(self) -> None:
        self._by_customer.clear()


@dataclass(slots=True)
class _Judgement:
    steps: int = 0
    last_step: ClockStep | None = None
    stepped_unconfirmed: bool = False  # a step seen and no sync source since to vouch for it
    token_estimate: Interval | None = None
    token_customers: int = 0
    receiver_estimate: float | None = None  # true time minus the system clock, by the receivers
    receivers: int = 0
    sources: list[str] = field(default_factory=lambda: [SOURCE_SYSTEM])


class ClockJudge:
    """Decides agent time (``monotonic + offset``) from readings and evidence."""

    def __init__(
        self,
        step_tolerance_s: float,
        min_token_customers: int,
        max_estimate_uncertainty_s: float,
        token_tolerance_s: float,
        min_receivers: int = 2,
    ) -> None:
        self._tolerance = step_tolerance_s
        self._min_customers = min_token_customers
        self._max_uncertainty = max_estimate_uncertainty_s
        self._token_tolerance = token_tolerance_s
        self._min_receivers = min_receivers
        self._system_offset: float | None = None  # wall - monotonic as last followed
        self._unconfirmed: float | None = None  # a step's new wall - monotonic, seen once
        self._correction = 0.0  # added to the wall clock from the token estimate
        self._synced: bool | None = None
        self._j = _Judgement()

    @property
    def offset(self) -> float:
        """Agent time is ``monotonic + offset``."""
        assert self._system_offset is not None, "start() first"
        return self._system_offset + self._correction

    def start(self, reading: ClockReading) -> None:
        self._system_offset = reading.wall - reading.monotonic
        self._synced = reading.synced

    def check(self, reading: ClockReading) -> float:
        """Follow the system clock; return the step agent time takes (0.0: none to apply).

        Small differences are followed without a step (the caller applies nothing, durations
        move by milliseconds); a step beyond the tolerance is returned, for the caller to shift
        every time it holds by it."""
        if self._system_offset is None:
            self.start(reading)
            return 0.0
        was_synced, self._synced = self._synced, reading.synced
        before = self.offset
        system = reading.wall - reading.monotonic
        moved = system - self._system_offset
        if abs(moved) <= self._tolerance:
            self._system_offset, self._unconfirmed = system, None
            if reading.synced and not was_synced:
                self._synchronised()  # may drop a correction: that is a step of agent time
            delta = self.offset - before
            if abs(delta) <= self._tolerance:
                return 0.0
            self._time_moved()
            return delta
        if self._unconfirmed is None or abs(system - self._unconfirmed) > self._tolerance:
            # A step is believed when the next reading agrees (as ntpd waits out its stepout
            # before stepping): one stray reading (a clock being set while it is read) must not
            # re-date every visit twice. A real step is applied a tick late; agent time never
            # moved meanwhile, so nothing is stamped wrong.
            self._unconfirmed = system
            self._synced = was_synced
            return 0.0
        self._system_offset, self._unconfirmed = system, None
        self._j.steps += 1
        self._j.last_step = ClockStep(reading.monotonic + system + self._correction, moved)
        if reading.synced:
            self._synchronised()  # NTP stepped it: the new time is the right one
        else:
            self._j.stepped_unconfirmed = True
        self._time_moved()
        return self.offset - before

    def _time_moved(self) -> None:
        """Agent time stepped: what the phones' tokens said was measured against the time before
        (each bound is a window minus the box time it was heard at), so it says nothing of the
        time now. Kept, the estimate of a box that booted 3 h behind went on disagreeing with the
        clock NTP had just set right, and the clock stayed untrusted. The caller clears the
        evidence (``TokenClock.forget_evidence``) when this returns a step."""
        self._j.token_estimate, self._j.token_customers = None, 0

    def _synchronised(self) -> None:
        """NTP vouches for the system clock: drop any correction from other evidence."""
        self._j.stepped_unconfirmed = False
        self._j.receiver_estimate, self._j.receivers = None, 0
        self._correction = 0.0

    def tokens(self, evidence: TokenEvidence) -> float:
        """Weigh the phones' tokens; return the step agent time takes if they correct it.

        Only an untrusted clock (NTP unsynchronised or unknown) is corrected, only by agreement
        of ``min_token_customers`` customers, and only once the estimate is narrower than
        ``max_estimate_uncertainty_s``: a coarse estimate raises the alarm without moving time.
        """
        found = evidence.estimate()
        if found is None:
            return 0.0
        interval, customers = found
        # The evidence is in box time as the resolver saw it (agent time), so its error is on top
        # of the correction already applied.
        estimate = Interval(interval.low + self._correction, interval.high + self._correction)
        self._j.token_estimate, self._j.token_customers = estimate, customers
        if customers < self._min_customers or self._synced:
            return 0.0
        middle = (estimate.low + estimate.high) / 2
        uncertainty = (estimate.high - estimate.low) / 2
        if uncertainty > self._max_uncertainty or abs(middle - self._correction) <= self._token_tolerance:
            return 0.0
        before = self.offset
        self._correction = middle
        if SOURCE_TOKENS not in self._j.sources:
            self._j.sources.append(SOURCE_TOKENS)
        # The caller clears the evidence: what comes next is measured against the corrected time.
        return self.offset - before

    def receivers(self, offsets: Mapping[str, float], configured: int) -> float:
        """Weigh remote receivers' clock offsets (each off one: its clock minus agent time, out
        of ``configured`` receivers); return the step agent time takes if they correct it.

        A majority of the configured receivers, and at least ``min_receivers``, must agree within
        the tolerance; they correct only a box that says NTP has not synchronised it."""
        if len(offsets) < self._min_receivers:
            self._j.receiver_estimate, self._j.receivers = None, 0
            return 0.0
        values = sorted(offsets.values())
        middle = values[len(values) // 2]
        agreeing = [v for v in values if abs(v - middle) <= self._token_tolerance]
        if len(agreeing) < self._min_receivers or 2 * len(agreeing) <= max(configured, len(values)):
            return 0.0
        estimate = statistics.median(agreeing) + self._correction
        self._j.receiver_estimate, self._j.receivers = estimate, len(agreeing)
        if self._synced is not False or abs(estimate - self._correction) <= self._token_tolerance:
            return 0.0
        if self._tokens_decide():
            return 0.0  # the phones are the independent witness: receivers never overrule them
        before = self.offset
        self._correction = estimate
        if SOURCE_RECEIVERS not in self._j.sources:
            self._j.sources.append(SOURCE_RECEIVERS)
        return self.offset - before

    def _tokens_decide(self) -> bool:
        """Whether the phones' estimate is firm enough to stand (enough customers, tight)."""
        estimate = self._j.token_estimate
        return (
            estimate is not None
            and self._j.token_customers >= self._min_customers
            and (estimate.high - estimate.low) / 2 <= self._max_uncertainty
        )

    def state(self) -> ClockState:
        j = self._j
        trusted = bool(self._synced) or (self._synced is None and not j.stepped_unconfirmed)
        estimate = j.token_estimate
        disagreement = (
            estimate is not None
            and j.token_customers >= self._min_customers
            and not estimate.low <= 0.0 <= estimate.high
            and abs((estimate.low + estimate.high) / 2) > self._token_tolerance
        )
        receivers_disagree = (
            j.receiver_estimate is not None and abs(j.receiver_estimate) > self._token_tolerance
        )
        trusted = trusted and not disagreement and not receivers_disagree and self._correction == 0.0
        if estimate is not None and j.token_customers >= self._min_customers:
            error: float | None = (estimate.low + estimate.high) / 2
            uncertainty: float | None = (estimate.high - estimate.low) / 2
        elif j.receiver_estimate is not None:
            # Receivers date sightings to the second and deliver within a second or two.
            error, uncertainty = j.receiver_estimate, min(self._token_tolerance, self._max_uncertainty)
        elif self._correction:  # corrected, and the evidence since agrees with the correction
            error, uncertainty = self._correction, min(self._token_tolerance, self._max_uncertainty)
        else:
            error = uncertainty = None
        # An alarm needs evidence that the clock is wrong: NTP not (yet) synchronised alone is
        # the untrusted flag, since many boxes run for good without it.
        alarm = None
        precise = uncertainty is not None and uncertainty <= self._max_uncertainty
        if error is not None and precise and abs(error) > self._token_tolerance:
            if estimate is not None and j.token_customers >= self._min_customers:
                by = f"phones' tokens put true time {error:+.0f} s from the system clock " + (
                    f"(+/- {uncertainty:.0f} s, {j.token_customers} customers)"
                )
            elif j.receiver_estimate is not None:
                by = f"{j.receivers} remote receivers put true time {error:+.0f} s from the system clock"
            else:
                by = f"the system clock is corrected by {error:+.0f} s ({', '.join(j.sources[1:])})"
            alarm = f"clock off: {by}"
        elif not trusted and j.stepped_unconfirmed and j.last_step is not None:
            alarm = f"clock untrusted: stepped {j.last_step.size_s:+.0f} s with no NTP sync"
        return ClockState(
            trusted=trusted,
            synced=self._synced,
            steps=j.steps,
            last_step=j.last_step,
            estimated_error_s=None if error is None else round(error, 3),
            estimate_uncertainty_s=None if uncertainty is None else round(uncertainty, 3),
            correction_s=round(self._correction, 3),
            sources=tuple(j.sources),
            alarm=alarm,
        )

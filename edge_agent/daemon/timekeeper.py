"""Agent time: the clock the daemon's parts stamp and measure with, judged every tick.

Agent time is ``monotonic + offset`` (``core.wallclock.ClockJudge`` decides the offset): it
follows the system's wall clock, but a step of that clock reaches the pipeline as one decision,
``Pipeline.shift``, which re-dates every time the agent holds, so no visit ends or opens, no TTL
lapses and no interval is counted twice because the clock moved. The adapters take ``clock``
(scanners stamp sightings with it, the link expires notifications by it); the daemon's main loop
calls ``check`` on each tick.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from edge_agent.adapters.ntpsync import SyncSource, sync_source
from edge_agent.core.clock import Clock
from edge_agent.core.events import ClockStatus, utc
from edge_agent.core.events import ClockStep as ClockStepStatus
from edge_agent.core.repeats import REPEAT_INTERVAL_S, RepeatLimiter, held_back
from edge_agent.core.settings import ClockSettings
from edge_agent.core.tokenclock import TokenClock
from edge_agent.core.wallclock import ClockJudge, ClockReading, ClockState

_LOGGER = logging.getLogger(__name__)


class Timekeeper:
    def __init__(self, settings: ClockSettings, system: Clock, synced: SyncSource | None = None) -> None:
        self._system = system
        self._synced = synced if synced is not None else sync_source(settings.sync_source)
        self._judge = ClockJudge(
            settings.step_tolerance_s, settings.min_token_customers,
            settings.max_estimate_uncertainty_s, settings.token_tolerance_s, settings.min_agreeing_receivers,
        )  # fmt: skip
        self._judge.start(self._read())
        self._offset = self._judge.offset  # read by every thread that stamps; a float is atomic
        self._lock = threading.Lock()
        # A clock stepping to and fro must not flood the log.
        self._warnings = RepeatLimiter(REPEAT_INTERVAL_S)
        self.clock = Clock(wall=self.now, monotonic=system.monotonic)

    def now(self) -> float:
        """Agent time: what sightings are stamped and messages dated with."""
        return self._system.monotonic() + self._offset

    def _read(self) -> ClockReading:
        return ClockReading(self._system.wall(), self._system.monotonic(), self._synced())

    def check(
        self, token_clock: TokenClock | None = None, receiver_offsets: Mapping[str, float] | None = None,
        receivers: int = 0,
    ) -> float:  # fmt: skip
        """Judge the clock once; return the step agent time took (0.0: none) for the caller to
        hand to ``Pipeline.shift``. Also tells ``token_clock`` whether to look far for tokens.
        ``receiver_offsets``: remote receivers' clocks minus agent time, where they are off, out of
        ``receivers`` configured."""
        with self._lock:
            steps_before = self._judge.state().steps
            step = self._judge.check(self._read())
            if token_clock is not None:
                if step:
                    token_clock.forget_evidence()  # measured against the time before the step
                token_step = self._judge.tokens(token_clock.evidence)
                if token_step:
                    token_clock.forget_evidence()
                    self._log("tokens", "clock corrected by %+.1f s from customers' tokens: %s",
                              token_step, self._judge.state().alarm)  # fmt: skip
                step += token_step
            if receiver_offsets is not None:
                receiver_step = self._judge.receivers(receiver_offsets, receivers)
                if receiver_step:
                    self._log("receivers", "clock corrected by %+.1f s from remote receivers: %s",
                              receiver_step, self._judge.state().alarm)  # fmt: skip
                step += receiver_step
            self._offset = self._judge.offset
            state = self._judge.state()
            if token_clock is not None:
                token_clock.searching = state.synced is not True
        if state.steps > steps_before and state.last_step is not None:
            self._log(
                "step", "wall clock stepped %+.1f s (%s): agent time follows without ending visits",
                state.last_step.size_s, "NTP synchronised" if state.synced else "not NTP synchronised",
            )  # fmt: skip
        return step

    def _log(self, kind: str, text: str, *args: object) -> None:
        held = self._warnings.admit(kind, self._system.monotonic())
        if held is not None:
            _LOGGER.warning(text + "%s", *args, held_back(held))

    def state(self) -> ClockState:
        with self._lock:
            return self._judge.state()

    def status(self) -> ClockStatus:
        state = self.state()
        step = state.last_step
        last = None if step is None else ClockStepStatus(at=utc(step.at), size_s=round(step.size_s, 3))
        return ClockStatus(
            trusted=state.trusted, synced=state.synced, steps=state.steps, last_step=last,
            estimated_error_s=state.estimated_error_s, estimate_uncertainty_s=state.estimate_uncertainty_s,
            correction_s=state.correction_s, sources=list(state.sources),
        )  # fmt: skip

"""``edge-agent run``: the daemon. Wires sources, pipeline, link and scheduler together.

One main thread owns the pipeline (and so the core and SQLite writes); everything else talks
to it through one queue: sources put sightings (one bleak scanner per receiver that names a
local ``adapter``, remote receivers on MQTT, ``--trace``), the link puts downlinks, the
scheduler puts ticks.
Sightings are committed in groups (``storage.group_max_events`` or ``storage.group_max_delay_s``),
so a power cut loses at most the group not yet committed and never a message already acted on.
"""

from __future__ import annotations

import gc
import json
import logging
import queue
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

from edge_agent.adapters.ble import ScannerHealth
from edge_agent.adapters.clock import SYSTEM_CLOCK
from edge_agent.adapters.configfile import load_config
from edge_agent.adapters.link import DownlinkDelivery, MqttLink
from edge_agent.adapters.malloc import map_large_blocks
from edge_agent.adapters.sdnotify import SystemdNotifier
from edge_agent.core.clock import Clock
from edge_agent.core.const import TOKEN_SLICE_GAP_S, URGENT_QUIET_S
from edge_agent.core.errors import ConfigError
from edge_agent.core.events import ScannerStatus, StatusMessage, StatusState, utc
from edge_agent.core.liveness import Liveness
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.trace import TraceProblem, read_trace
from edge_agent.daemon.assembly import Broker, Wiring, assemble
from edge_agent.daemon.timekeeper import Timekeeper
from edge_agent.daemon.timers import Timers

_LOGGER = logging.getLogger(__name__)


class _Tick:
    """Scheduler marker: time has passed, close what is due."""


_TICK = _Tick()
_STOP = object()
_RELOAD = object()
_LINK_CHANGED = object()


class _ClockShift:
    """Queue marker: agent time stepped by ``delta_s``; the sightings queued before it were
    stamped before the step, so the pipeline is shifted only once they are through."""

    def __init__(self, delta_s: float) -> None:
        self.delta_s = delta_s


# Sections a running daemon cannot swap in place: ids and time zone are in every message, the
# database is open, and the MQTT link and scanners are built from these. A reload keeps their
# running values and says that a restart is needed.
RESTART_SECTIONS = ("store", "storage", "mqtt", "remote", "receivers", "ble", "gatt")
WorkItem = Sighting | DownlinkDelivery | _Tick | object


class Service:
    def __init__(
        self, config: AgentConfig, clock: Clock = SYSTEM_CLOCK, config_path: Path | None = None
    ) -> None:
        self.config = config
        self.config_path = config_path
        map_large_blocks()  # token tables come and go every rotation: their memory must go back
        # Every part stamps and measures on agent time, which follows the system clock but
        # takes its steps as one decision (daemon.timekeeper).
        self.timekeeper = Timekeeper(config.clock, clock)
        clock = self.clock = self.timekeeper.clock
        self._pending_shift = 0.0  # steps taken by agent time, not yet by the pipeline
        self._last_shift: _ClockShift | None = None  # the pipeline's latest, for late stamps
        self._work: queue.Queue[WorkItem] = queue.Queue()
        wiring = Wiring(
            on_downlink=self._work.put,
            submit=self.submit,
            online_status=lambda: self.status_message("online").to_json(),
            on_link_change=lambda: self._work.put(_LINK_CHANGED),
        )
        self.agent = assemble(config, clock, Broker.of(config), wiring, tables_in_slices=True)
        # What the start loaded stays for the process's life (a million customers' ids and the
        # containers holding them): out of the collector's sight (gc.freeze), a full collection
        # no longer walks them. Measured with a million customers' registry held: 22-24 ms per
        # full collection before, under 0.1 ms after; one in a busy day's main loop took 60 ms.
        gc.freeze()
        self.database = self.agent.database
        self.pipeline = self.agent.pipeline
        assert self.agent.link is not None  # a broker was given
        self.link: MqttLink = self.agent.link
        self.remote = self.agent.remote
        self.ble = self.agent.ble
        self._scheduler = Timers(clock)  # monotonic: a wall step back must not stop the ticks
        self.notifier = SystemdNotifier()
        self.liveness = Liveness()
        self._stalled: list[str] = []
        self._stopped = threading.Event()
        # The snapshot `edge-agent status` reads is written by the heartbeat (scheduler), the
        # main loop (link changes) and stop; once stop wrote its last one, nothing overwrites it.
        self._snapshot_lock = threading.Lock()
        self._snapshot_final = False
        self._thread: threading.Thread | None = None
        self._sources: list[threading.Thread] = []

    # ------------------------------------------------------------------ inputs

    def submit(self, sighting: Sighting) -> None:
        """Hand a sighting to the main loop; safe from any thread."""
        self._work.put(sighting)

    def add_trace_source(self, path: Path) -> None:
        """Feed a recorded trace in real time, re-stamped to now (soak tests, site trials)."""
        thread = threading.Thread(target=self._play_trace, args=(path,), name="edge-agent-trace", daemon=True)
        self._sources.append(thread)

    def _play_trace(self, path: Path) -> None:
        with path.open(encoding="utf-8") as lines:
            offset: float | None = None
            for item in read_trace(lines):
                if self._stopped.is_set():
                    return
                if isinstance(item, TraceProblem):
                    _LOGGER.warning("trace %s: %s, skipped", path, item)
                    continue
                if offset is None:
                    offset = self.clock.wall() - item.ts
                delay = item.ts + offset - self.clock.wall()
                if delay > 0 and self._stopped.wait(delay):
                    return
                self.submit(_restamp(item, item.ts + offset))

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        scheduling = self.config.scheduler
        self._scheduler.add("tick", self._tick, scheduling.tick_interval_s)
        if self.notifier.watchdog_s is not None:
            # Ping at half the interval systemd allows, as sd_watchdog_enabled(3) advises.
            self._scheduler.add("watchdog", self._watchdog, self.notifier.watchdog_s / 2)
        self._scheduler.add("heartbeat", self._heartbeat, scheduling.heartbeat_interval_s)
        # The sender wakes on every commit; this nudge only bounds retry latency after a refusal.
        self._scheduler.add("drain", self.link.wake, 1.0)
        self.link.start()
        self._scheduler.start()
        self._thread = threading.Thread(target=self._main_loop, name="edge-agent-main", daemon=True)
        self._thread.start()
        for source in self._sources:
            source.start()
        if self.ble is not None:
            self.ble.start()
        self._heartbeat()
        # Ready means: configuration valid, database open, every thread started.
        self.notifier.ready(self.status_line())

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current group, commit pending PUBACKs, disconnect cleanly, close SQLite."""
        if self._stopped.is_set():
            return
        deadline = self.clock.monotonic() + timeout
        self._stopped.set()
        self.notifier.stopping()
        if self.ble is not None:
            self.ble.stop(max(0.1, deadline - self.clock.monotonic()))
        self._scheduler.shutdown()
        self._work.put(_STOP)
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - self.clock.monotonic()))
        self.pipeline.outbox.flush_gaps(self.clock.wall())  # held back by a full disk: keep them if it fits
        self.link.stop(max(0.1, deadline - self.clock.monotonic()))
        try:  # the figures as they were at the stop, saying it was one (`status`: "stopped")
            stopped = self.status_message("online").model_copy(update={"state": "offline", "link": "down"})
            self._store_snapshot(stopped, final=True)
        except Exception as exc:  # an unreadable database must not keep it open
            _LOGGER.warning("could not store the final status snapshot: %s", exc)
        self.database.close()

    def run_forever(self) -> int:
        """Run until SIGTERM or SIGINT; the daemon's entry point."""
        done = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            _LOGGER.info("signal %s received, stopping", signal.Signals(signum).name)
            done.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGHUP, lambda signum, frame: self.request_reload())
        self.start()
        _LOGGER.info("edge-agent running store=%s", self.config.store.id)
        # A refused connection is logged by the link and retried at the capped backoff: the
        # broker may be fixed without touching the store, and every event stays in SQLite.
        done.wait()
        self.stop()
        return 0

    # ------------------------------------------------------------------ reload

    def request_reload(self) -> None:
        """Ask the main loop to reload the TOML (what SIGHUP does); safe from any thread."""
        self._work.put(_RELOAD)

    def reload(self) -> bool:
        """Re-read the configuration file: apply it if valid, keep the running one if not.

        Runs on the main loop, which owns the core, so no sighting is processed half-way; the
        outbox, open visits, registry and orders are untouched either way.
        """
        if self.config_path is None:
            _LOGGER.warning("reload requested but the daemon was not started from a file")
            return False
        self.notifier.notify(reloading="1", status="reloading configuration")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                _LOGGER.error("config reload rejected, keeping the running configuration: %s", problem)
            self.notifier.notify(ready="1", status=self.status_line())
            return False
        pending = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(self.config, name)]
        for name in pending:
            _LOGGER.warning("config reload: [%s] changed and takes effect at the next restart", name)
        effective = new.model_copy(update={name: getattr(self.config, name) for name in pending})
        self.pipeline.core.reconfigure(effective)
        self.pipeline.config = effective
        if effective.scheduler != self.config.scheduler:
            self._scheduler.reschedule("tick", effective.scheduler.tick_interval_s)
            self._scheduler.reschedule("heartbeat", effective.scheduler.heartbeat_interval_s)
        self.config = effective
        _LOGGER.info("configuration reloaded from %s", self.config_path)
        self.notifier.notify(ready="1", status=self.status_line())
        return True

    # ------------------------------------------------------------------ supervision

    def _tick(self) -> None:
        self.liveness.beat("scheduler", self.clock.monotonic())
        self._work.put(_TICK)

    def stall_limits(self) -> dict[str, float]:
        """How long each part may go without progress before the watchdog stops pinging.

        The main loop wakes every 0.5 s, the link thread every 0.25 s (a connection attempt
        holds it up to paho's 5 s connect timeout; attempts come at least every
        ``reconnect_max_s``) and the tick job every ``tick_interval_s``.
        """
        base = max(self.notifier.watchdog_s or 30.0, 5.0, 3 * self.config.scheduler.tick_interval_s)
        mqtt = self.config.mqtt
        return {
            "main": base,
            "sender": base,
            "scheduler": base,
            "mqtt": max(base, 2 * mqtt.keepalive_s, 2 * mqtt.reconnect_max_s),
        }

    def _watchdog(self) -> None:
        self.liveness.beat("sender", self.link.last_progress)
        self.liveness.beat("mqtt", self.link.network_progress)
        stalled = self.liveness.stalled(self.clock.monotonic(), self.stall_limits())
        if stalled != self._stalled:
            if stalled:
                _LOGGER.error(
                    "no progress from %s: withholding the systemd watchdog ping", ", ".join(stalled)
                )
            self._stalled = stalled
        if not stalled:
            self.notifier.notify(watchdog="1", status=self.status_line())

    def _pipeline_now(self) -> float:
        """Agent time as the pipeline knows it: without a step still waiting in the queue."""
        return self.clock.wall() - self._pending_shift

    def status_message(self, state: StatusState) -> StatusMessage:
        if state != "online":  # the last will is built before anything else exists; it needs no figures
            return self.pipeline.status(state, self.clock.wall())
        clock = self.timekeeper.status()
        clock_alarm = self.timekeeper.state().alarm
        stats = self.link.stats
        scanners = self.ble.scanners if self.ble is not None else []
        link = self.link.state
        return self.pipeline.status(
            state,
            self.clock.wall(),
            last_sync=None if stats.last_sync is None else utc(stats.last_sync),
            sent=stats.acknowledged,
            resent=stats.resent,
            scanners=[_scanner_status(scanner.health) for scanner in scanners],
            remote=self.remote.status() if self.remote is not None else None,
            link=link,
            link_error=self.link.error,
            since=stats.connected_since if link == "up" else None,
            clock=clock,
            alarms=[clock_alarm] if clock_alarm else [],
        )

    def _heartbeat(self) -> None:
        """Tell HQ (retained status) and leave the same figures for `edge-agent status`."""
        message = self.status_message("online")
        self._store_snapshot(message)
        self.link.publish_status(message.to_json())

    def _store_snapshot(self, message: StatusMessage, final: bool = False) -> None:
        """Leave ``message`` for `edge-agent status` (never on the link thread: SQLite waits)."""
        with self._snapshot_lock:
            if self._snapshot_final:
                return
            self._snapshot_final = final
            try:
                self.pipeline.state.put_meta("status", json.dumps(message.model_dump(mode="json")))
            except Exception as exc:  # a full disk must not stop the heartbeat to HQ (nor flood the log)
                _LOGGER.warning("could not store the status snapshot: %s", exc)

    def status_line(self) -> str:
        return (
            f"queue={self.pipeline.outbox.depth()} link={self.link.state} "
            f"open_visits={self.pipeline.core.open_visits}"
        )

    # ------------------------------------------------------------------ main loop

    def _main_loop(self) -> None:
        group_max = self.config.storage.group_max_events
        group_delay = self.config.storage.group_max_delay_s
        batch: list[Sighting] = []
        batch_deadline = 0.0
        # Slices are paced on the process's own monotonic clock, not the agent's: they share
        # the CPU in real time whatever clock the store runs on (a simulation's runs fast).
        sliced_at = time.monotonic()
        quiet_until = 0.0  # no slice before this: a notification is on its way out
        while True:
            self.liveness.beat("main", self.clock.monotonic())
            timeout = max(0.0, batch_deadline - self.clock.monotonic()) if batch else 0.5
            # Token windows still to build: a slice when idle; and between items too while the
            # window of now is missing (at start) or no slice ran for TOKEN_SLICE_GAP_S (a busy
            # store), so the tables never wait for a quiet moment that does not come.
            building = self.pipeline.tables_pending
            urgent_tables = building and self.pipeline.tables_urgent
            paced = time.monotonic()
            quiet = building and paced < quiet_until and not urgent_tables
            if building and not quiet and (urgent_tables or paced - sliced_at >= TOKEN_SLICE_GAP_S):
                self.pipeline.precompute(self._pipeline_now())
                sliced_at = time.monotonic()
                building = self.pipeline.tables_pending
            wait = min(timeout, quiet_until - paced) if quiet else (0.0 if building else timeout)
            try:
                item = self._work.get(timeout=max(0.0, wait))
            except queue.Empty:
                if not building or self.clock.monotonic() >= batch_deadline:
                    self._flush(batch)
                if building and not (time.monotonic() < quiet_until and not self.pipeline.tables_urgent):
                    self.pipeline.precompute(self._pipeline_now())
                    sliced_at = time.monotonic()
                continue
            if isinstance(item, Sighting):
                item = self._redated(item)
                if not batch:
                    batch_deadline = self.clock.monotonic() + group_delay
                batch.append(item)
                # Sightings go through the core as they come; their messages are committed in
                # groups (one fsync each), closed when full or old, or at once when a shopper
                # is being notified: that message must not wait for the group.
                urgent = self.pipeline.observe(item)
                if not urgent and len(batch) < group_max and self.clock.monotonic() < batch_deadline:
                    continue
                self._flush(batch)
                if urgent:
                    quiet_until = time.monotonic() + URGENT_QUIET_S
                continue
            self._flush(batch)
            if item is _STOP:
                return
            try:
                self._handle(item)
            except Exception:  # one bad item must not stop the store
                _LOGGER.exception("main loop failed on %s", type(item).__name__)

    def _handle(self, item: WorkItem) -> None:
        if isinstance(item, DownlinkDelivery):
            self.pipeline.downlink(item.topic, item.payload, self._pipeline_now())
            self.link.ack_downlink(item.mid, item.qos)  # only now: the effect is committed
            self.link.wake()
        elif item is _TICK:
            self._judge_clock()
            if self.pipeline.tick(self._pipeline_now()):
                self.link.wake()
        elif isinstance(item, _ClockShift):
            self.pipeline.shift(item.delta_s)
            self._pending_shift -= item.delta_s
            self._last_shift = item
        elif item is _RELOAD:
            self.reload()
        elif item is _LINK_CHANGED:
            self._store_snapshot(self.status_message("online"))

    def _redated(self, sighting: Sighting) -> Sighting:
        """A sighting stamped just before a step but queued behind its marker (a scanner read
        the clock, then the step was taken, then it queued): dated by the step, it would open a
        visit hours ago or keep one open for an hour. It is the one whose time the step explains."""
        shift = self._last_shift
        # A remote node's sighting is within max_clock_skew_s of now: only a step well beyond
        # that can be told from it.
        if shift is None or abs(shift.delta_s) <= 2 * self.config.remote.max_clock_skew_s:
            return sighting
        now = self._pipeline_now()
        if abs(sighting.ts - now) > abs(shift.delta_s) / 2 > abs(sighting.ts + shift.delta_s - now):
            return _restamp(sighting, sighting.ts + shift.delta_s)
        return sighting

    def _judge_clock(self) -> None:
        """Judge the wall clock; a step goes through the queue behind what was stamped before."""
        offsets = self.remote.clock_offsets() if self.remote is not None else None
        step = self.timekeeper.check(self.pipeline.core.token_clock, offsets, len(self.config.receivers))
        if step:
            self._pending_shift += step
            self._work.put(_ClockShift(step))
        self.pipeline.outbox.clock_trusted = self.timekeeper.state().trusted

    def _flush(self, batch: list[Sighting]) -> None:
        """Commit what the group's sightings (already through the core) caused."""
        if not batch:
            return
        try:
            self.pipeline.commit()
        except Exception:
            _LOGGER.exception("could not commit a group of %d sightings", len(batch))
        batch.clear()
        self.link.wake()


def _restamp(sighting: Sighting, ts: float) -> Sighting:
    return replace(sighting, ts=ts)


def _scanner_status(health: ScannerHealth) -> ScannerStatus:
    return ScannerStatus(
        receiver=health.receiver,
        adapter=health.adapter,
        mode=health.mode,
        running=health.running,
        last_advertisement=None if health.last_advertisement is None else utc(health.last_advertisement),
        watchdog_restarts=health.watchdog_restarts,
        errors=health.errors,
        reason=health.reason or None,
    )

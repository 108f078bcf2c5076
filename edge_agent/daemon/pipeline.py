"""One path for production, replay and demo: the core plus the SQLite it needs, and no threads.

The pipeline turns sightings, downlinks and clock ticks into rows in the outbox. Whoever drives
it (the daemon's main loop, a replay, the demo) decides where inputs come from and what time it
is; whoever drains the outbox (the MQTT link, a file writer) decides where messages go.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from edge_agent import __version__
from edge_agent.adapters.aes_worker import AesWorker
from edge_agent.core.cipher import REFERENCE, BlockCipher
from edge_agent.core.clock import Clock
from edge_agent.core.const import PRIORITY_NAMES, PRIORITY_NOTIFICATION
from edge_agent.core.downlinks import (
    DOWNLINKS,
    AppliedBy,
    CommandsDownlink,
    Handlers,
    message_id_of,
    parse_downlink,
)
from edge_agent.core.errors import DiskFull, DownlinkRejected
from edge_agent.core.events import (
    BeaconMessage,
    Envelopes,
    ErasureMessage,
    ErrorMessage,
    Message,
    ReceiverMessage,
    StatusMessage,
    StatusState,
)
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.repeats import RepeatLimiter, held_back
from edge_agent.core.settings import AgentConfig
from edge_agent.core.sighting import Sighting
from edge_agent.core.store import StoreCore
from edge_agent.core.topics import Topics
from edge_agent.daemon.registry_load import load_registry_ahead
from edge_agent.storage.calibration import CalibrationStore
from edge_agent.storage.clock import SYSTEM_CLOCK
from edge_agent.storage.database import Database
from edge_agent.storage.outbox import Outbox
from edge_agent.storage.state import StateStore

_LOGGER = logging.getLogger(__name__)

# How often touchpoints older than storage.journey_days are deleted.
JOURNEY_PRUNE_S = 3600.0
# How stale a kept open visit's last sighting may get.
VISIT_SNAPSHOT_S = 30.0
# Receivers' calibration is kept this often: estimates move slowly, and a restart within the
# minute loses at most one minute of refinement (the samples refill within the window anyway).
CALIBRATION_SAVE_S = 60.0
# The kinds the pipeline applies itself (AppliedBy.ERASURE), each by its method.
ERASURE_COMMANDS: Handlers[Pipeline, [float], None] = Handlers("pipeline")


class Pipeline:
    def __init__(
        self,
        config: AgentConfig,
        database: Database,
        ids: EventIdFactory,
        cipher: BlockCipher = REFERENCE,
        topics: Topics | None = None,
        clock: Clock = SYSTEM_CLOCK,
        *,
        tables_in_slices: bool = False,
        aes_worker: AesWorker | None = None,
    ) -> None:
        """``tables_in_slices``: the driver calls ``precompute`` between inputs (the daemon), so
        no sighting waits for a token window to be built (see core.identity.TokenResolver).
        ``aes_worker``: encrypts the window of now while the registry is read (then closed)."""
        self.config = config
        self.database = database
        self.ids = ids
        self.envelope = Envelopes(config.store.id, ids)
        self.topics = topics or config.topics
        # A new boot id at every start: HQ expects each stream's seq to restart at 1 with it.
        self.outbox = Outbox(
            database,
            self.topics,
            boot_id=ids.random(8).hex(),
            max_bytes=config.storage.outbox_max_bytes,
            ids=ids,
            clock=clock,
        )
        self.state = StateStore(database)
        self.core = StoreCore(config, ids, cipher, tables_in_slices=tables_in_slices)
        if aes_worker is not None:
            load_registry_ahead(self.core, self.state, clock.wall(), aes_worker)
        else:
            self.core.load_registry(self.state.customer_pages())
        self.core.load(
            (), self.state.orders(), self.state.registry_version(), self.state.logged_downlinks(),
        )  # fmt: skip
        self.core.restore_visits(self.state.open_visits())
        self.core.journey.restore_check_ins(self.state.check_ins())
        self.core.restore_rule_state(self.state.rule_state())
        self.core.restore_sent(self.state.customer_notifications())
        self.calibration = CalibrationStore(database)
        self.core.restore_calibration(self.calibration.load())
        self._calibration_saved_at: float | None = None
        self._calibration_warnings = RepeatLimiter()
        self._build_warnings = RepeatLimiter()
        self.counters: Counter[str] = Counter()
        self._visits_saved_at: float | None = None
        self._pending: list[Message] = []  # observed, not yet committed
        self._pending_ts: float | None = None
        self._journey_pruned_at: float | None = None

    def process(self, sightings: Sequence[Sighting]) -> int:
        """Run a group of sightings through the core and commit what they caused at once."""
        for sighting in sightings:
            self.observe(sighting)
        return self.commit()

    def observe(self, sighting: Sighting) -> bool:
        """Run one sighting through the core; its messages wait for ``commit``.

        Returns True when a notification is waiting: a shopper is being told something now,
        so the caller should commit at once rather than at the end of the group.
        """
        try:
            messages = self.core.observe(sighting)
        except Exception:  # a bug must cost one sighting, not the daemon
            self.counters["sighting_errors"] += 1
            _LOGGER.exception("sighting from receiver=%s failed in the core", sighting.receiver)
            return False
        self._pending_ts = sighting.ts
        if not messages:
            return False
        self._pending.extend(messages)
        return any(m.priority == PRIORITY_NOTIFICATION for m in messages)

    def commit(self) -> int:
        """Commit what the sightings observed since the last commit caused (one transaction)."""
        if self._pending_ts is None:
            return 0
        messages, now = self._pending, self._pending_ts
        self._commit(messages, now)  # if this raises, the messages stay pending for the next try
        self._pending, self._pending_ts = [], None
        return len(messages)

    def tick(self, now: float) -> int:
        messages = self.core.tick(now)
        self._commit(messages, now)
        self._save_calibration(now)
        self._warn_calibration(messages, now)
        self.database.restore_reserve()  # a stat when it is there; rebuilt once the disk has room
        self.outbox.flush_gaps(now)  # gap records a full disk held back
        if self._journey_pruned_at is None or now - self._journey_pruned_at >= JOURNEY_PRUNE_S:
            self._journey_pruned_at = now
            horizon = self._journey_horizon(now)
            self.state.prune_journey(horizon)
            self.database.give_back_free_pages()  # the file shrinks back after an outage, slowly
            self.state.compact_downlink_log(self.core.journey.snapshot_downlinks, horizon)
        return len(messages)

    def shift(self, delta_s: float) -> None:
        """Agent time followed a wall-clock step (``daemon.timekeeper``): re-date what the core,
        the queued rows, the journey's last day and this pipeline hold, and rewrite the open
        visits and the rules' kept state with their new times at the next commit; nothing ends
        or opens because of it."""
        self.commit()
        self.core.shift(delta_s)
        self.outbox.shift(delta_s)
        self.state.shift_journey(delta_s)
        self._visits_saved_at = None
        if self._journey_pruned_at is not None:
            self._journey_pruned_at += delta_s
        if self._calibration_saved_at is not None:
            self._calibration_saved_at += delta_s

    def _save_calibration(self, now: float) -> None:
        """Keep the receivers' estimates every ``CALIBRATION_SAVE_S``, so a restart uses them."""
        calibration = self.core.calibration
        if not calibration.active:
            return
        if self._calibration_saved_at is not None and now - self._calibration_saved_at < CALIBRATION_SAVE_S:
            return
        records = calibration.records()
        if not records:
            return
        try:
            self.database.write(lambda conn: self.calibration.save(records, now))
        except DiskFull as exc:  # the estimates in memory still apply; the next minute retries
            _LOGGER.warning("calibration not saved: %s", exc)
            return
        self._calibration_saved_at = now

    def _warn_calibration(self, messages: list[Message], now: float) -> None:
        """A drifted or silent receiver and a moved beacon need a person: WARNING, rate-limited
        per receiver or beacon (the event itself goes to HQ and into status)."""
        for message in messages:
            said: str
            if isinstance(message, ReceiverMessage) and message.event in ("drift", "silent"):
                subject, said = message.receiver.receiver, message.event
            elif isinstance(message, BeaconMessage) and message.event == "moved":
                subject, said = message.beacon.beacon_id, "moved"
            else:
                continue
            held = self._calibration_warnings.admit(f"{said}:{subject}", now)
            if held is None:
                continue
            if isinstance(message, ReceiverMessage):
                _LOGGER.warning(
                    "receiver %s: calibration %s (offset %s dB, was %s dB)%s", subject, said,
                    message.receiver.offset_db, message.previous_offset_db, held_back(held),
                )  # fmt: skip
            else:
                _LOGGER.warning(
                    "beacon %s looks moved or replaced (residuals %s dB): left out of calibration%s",
                    subject, message.residuals_db, held_back(held),
                )  # fmt: skip

    @property
    def tables_pending(self) -> bool:
        return self.core.tables_pending

    @property
    def tables_urgent(self) -> bool:
        return self.core.tables_urgent

    def precompute(self, now: float) -> bool:
        """One slice of token-window building; whether more remains. Never raises: a failed
        slice is counted and logged, and resolution goes on with the windows it has."""
        try:
            return self.core.precompute(now)
        except Exception as exc:
            # The main loop asks again at once: a fault that persists must not flood the journal.
            self.counters["precompute_errors"] += 1
            held = self._build_warnings.admit("precompute", now, type(exc).__name__)
            if held is not None:
                _LOGGER.warning("token window build failed%s", held_back(held), exc_info=True)
            return False

    def _journey_horizon(self, now: float) -> float:
        """Touchpoints and receipts older than this are forgotten (``storage.journey_days``)."""
        return now - self.config.storage.journey_days * 86400

    def _commit(self, messages: list[Message], now: float) -> None:
        """Messages and the open visits they change, in one transaction; none when idle."""
        save_visits = self._visits_due(now, writing=bool(messages))
        if not messages and not save_visits and not self.core.journey.state_changed():
            return

        def write(conn: object) -> None:
            self.outbox.add(self._published(messages), now)
            self.state.record_journey(messages)
            self._keep_rule_state()
            if save_visits:
                self._save_open_visits(now)

        try:
            self.database.write(write)
        except DiskFull as exc:
            # Nothing fits even after evicting by policy: these messages are refused (numbered,
            # reported as a gap, alarmed) rather than retried forever from a growing memory.
            self.counters["disk_full_refusals"] += 1
            _LOGGER.error("%s", exc)
            self.outbox.refuse([m for m in messages if m.published], now)

    def _keep_rule_state(self) -> None:
        """The rules' promises in flight that changed, in the transaction of their messages."""
        changes = self.core.journey.state_changes()
        if changes:
            self.database.on_rollback(lambda: self.core.journey.state_not_kept(changes))
            self.state.keep_rule_state(changes)

    def _published(self, messages: list[Message]) -> list[Message]:
        """What goes to HQ: all but the journey log's own lines (a rule that did not act, and
        why), which are counted (``rules_not_fired``) and kept in the journey only."""
        published = [m for m in messages if m.published]
        if len(published) < len(messages):
            self.counters["rules_not_fired"] += len(messages) - len(published)
        return published

    def _visits_due(self, now: float, writing: bool) -> bool:
        """Save recognised customers' open visits when they change shape, and refresh their last
        sighting every ``VISIT_SNAPSHOT_S`` (riding on a commit that writes anyway, or alone
        after twice that): a restart then continues the same visit and journey, or ends it at
        its real last sighting, losing at most that much of its tail."""
        if self.core.changed_visits:
            return True
        if self._visits_saved_at is None:
            return self.core.open_visits > 0
        age = now - self._visits_saved_at
        return age >= 2 * VISIT_SNAPSHOT_S or (writing and age >= VISIT_SNAPSHOT_S)

    def _save_open_visits(self, now: float) -> None:
        """Rewrite the rows of visits that changed; every ``VISIT_SNAPSHOT_S`` all of them (their
        last sighting moves on every advertisement and is not worth a write each time)."""
        changed, self.core.changed_visits = self.core.changed_visits, set()
        saved_at = self._visits_saved_at

        def undo() -> None:  # not committed (a full disk): these visits are still to be saved
            self.core.changed_visits |= changed
            self._visits_saved_at = saved_at

        self.database.on_rollback(undo)
        stale = self._visits_saved_at is None or now - self._visits_saved_at >= VISIT_SNAPSHOT_S
        if stale:
            self.state.save_open_visits(self.core.open_visit_records())
            self._visits_saved_at = now
        else:
            self.state.update_open_visits(changed, self.core.open_visit_records(changed))

    def downlink(self, topic: str, payload: bytes, now: float) -> bool:
        """Validate and apply one downlink, or answer HQ on the errors topic. Never raises."""
        kind = self.topics.downlink_kind(topic)
        try:
            if kind is None:
                raise DownlinkRejected(f"{topic!r} is not a downlink topic of this store")
            downlink = parse_downlink(kind, payload)
        except DownlinkRejected as exc:
            self._reject(topic, kind, payload, exc.reason, now)
            return False
        if DOWNLINKS.of(downlink).applied_by is AppliedBy.ERASURE:
            # Across memory, file and WAL, after committing what was observed: not in the
            # transaction below.
            ERASURE_COMMANDS.apply(self, downlink, now)
            self.counters["downlinks_applied"] += 1
            return True
        with self.database.transaction():
            self.state.apply(downlink, now)
            caused = self.core.apply(downlink, now)
            self.outbox.add(self._published(caused), now)
            self.state.record_journey(caused)
            self._keep_rule_state()
            if self.core.changed_visits:
                self._save_open_visits(now)
        self.counters["downlinks_applied"] += 1
        _LOGGER.info("downlink applied kind=%s message_id=%s", kind, downlink.message_id)
        return True

    def _erase(self, downlink: CommandsDownlink, now: float) -> None:
        """Erase customers from memory and file, answer HQ with a receipt each, then push the
        freed pages out of the WAL so no copy of the data is left in the store's files."""
        self.commit()  # nothing observed about them may be committed after the erasure
        with self.database.transaction():
            for command in downlink.commands:
                had_visit = self.core.erase(command.customer_id)
                counts = self.state.erase(command.customer_id)
                unsent = self.outbox.erase_customer(command.customer_id)
                receipt = ErasureMessage(
                    **self.envelope.at(now),
                    request_id=command.request_id, customer_id=command.customer_id,
                    registry=counts["registry"] > 0, unsent_messages_removed=unsent,
                    journey_entries_removed=counts["journey"],
                    open_visit_removed=had_visit or counts["open_visit"] > 0,
                )  # fmt: skip
                self.outbox.add([receipt], now)
                _LOGGER.info("erased a customer request_id=%s", command.request_id)
            # The erased customers' logged lists went with rows shared with others: rebuild them.
            self.state.compact_downlink_log(
                self.core.journey.snapshot_downlinks, self._journey_horizon(now), force=True
            )
        self.database.checkpoint()

    def _reject(self, topic: str, kind: str | None, payload: bytes, reason: str, now: float) -> None:
        self.counters["downlinks_rejected"] += 1
        message_id = message_id_of(payload)
        _LOGGER.warning("downlink rejected kind=%s message_id=%s reason=%s", kind, message_id, reason)
        error = ErrorMessage(
            **self.envelope.at(now),
            topic=topic,
            kind=kind,
            message_id=message_id,
            reason=reason,
            payload_sha256=hashlib.sha256(payload).hexdigest(),
            payload_bytes=len(payload),
        )
        self.outbox.add([error], now)

    def status(
        self, state: StatusState, now: float, alarms: Sequence[str] = (), **figures: Any
    ) -> StatusMessage:
        """Birth, heartbeat or goodbye; an 'online' one carries the local figures (and the
        caller's ``alarms`` beside the outbox's and the database's)."""
        if state != "online":
            return StatusMessage(
                **self.envelope.at(now),
                state=state, agent_version=__version__, boot_id=self.outbox.boot_id,
            )  # fmt: skip
        by_priority, oldest = self.outbox.queue_figures()
        return StatusMessage(
            **self.envelope.at(now),
            state=state,
            agent_version=__version__,
            boot_id=self.outbox.boot_id,
            queue_depth=sum(by_priority.values()),
            queue_by_priority={PRIORITY_NAMES.get(p, str(p)): n for p, n in sorted(by_priority.items())},
            oldest_queued_s=None if oldest is None else round(max(0.0, now - oldest), 3),
            open_visits=self.core.open_visits,
            registry_size=len(self.core.customers),
            registry_version=self.core.registry_version,
            missing_beacons=self.core.missing_beacons,
            calibration=self.core.calibration_status(),
            outbox_bytes=self.outbox.bytes,
            dropped=dict(self.outbox.dropped),
            alarm="; ".join(a for a in (self.outbox.alarm, *self.database.alarms.values(), *alarms) if a)
            or None,
            integrity=self.database.integrity,
            token_tables={**self.core.token_tables, "build_errors": self.counters["precompute_errors"]},
            **figures,
        )


# The erasure command's handler is the pipeline's own ``_erase``.
ERASURE_COMMANDS.handles(CommandsDownlink)(Pipeline._erase)

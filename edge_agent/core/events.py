"""Versioned wire messages the agent publishes (DESIGN §5). Pydantic models at the edge.

Every message is JSON with ``schema``, ``event_id`` (a ULID, HQ deduplicates on it),
``store_id`` and ``ts`` (RFC 3339 UTC) followed by its body. A class's ``stream`` names the
topic below the store root and ``priority`` its place in the outbox queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from edge_agent.core.calibration import BeaconCheckState, ReceiverEventKind, ReceiverState
from edge_agent.core.const import PRIORITY_NOTIFICATION, PRIORITY_TELEMETRY, PRIORITY_TRANSACTIONAL
from edge_agent.core.ids import EventIdFactory

StatusState = Literal["online", "offline"]
BeaconState = Literal["present", "missing", "never_seen"]
# "moved": its readings disagree with every receiver's other beacons (moved or replaced, so left
# out of calibration); "in_place": they agree again.
BeaconEvent = Literal["missing", "returned", "low_battery", "moved", "in_place"]


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class Envelope(TypedDict):
    """What every message starts with (DESIGN §5), unpacked into its constructor."""

    event_id: str
    store_id: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class Envelopes:
    """Envelopes of one store: a fresh sortable id (HQ deduplicates on it), the store, the moment.

    Every part that makes messages holds one, so the three fields are written in one place."""

    store_id: str
    ids: EventIdFactory

    def at(self, now: float) -> Envelope:
        return {"event_id": self.ids.new(now), "store_id": self.store_id, "ts": utc(now)}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    stream: ClassVar[str]
    priority: ClassVar[int] = PRIORITY_TRANSACTIONAL
    retain: ClassVar[bool] = False
    # False: kept in the store's journey log only, never queued for HQ (``SkippedMessage``).
    published: ClassVar[bool] = True

    schema_name: str = Field(alias="schema")
    event_id: str
    store_id: str
    ts: datetime
    # Stamped by the outbox as the message becomes durable: an id drawn at each agent start and
    # a counter per stream from 1, so HQ tells a gap from a restart (as Sparkplug B does).
    # Status messages are state, not a stream: they carry boot_id and no seq.
    boot_id: str | None = None
    seq: Annotated[int, Field(ge=1)] | None = None
    # False when the agent did not trust its wall clock as it made the message (NTP not
    # synchronised, a step seen since, or phones' tokens disagreeing): its times may be off by
    # the status's ``clock.estimated_error_s``. Left out when the clock is trusted.
    clock_trusted: bool | None = Field(default=None, exclude_if=lambda value: value is None)

    @property
    def expires_at(self) -> float | None:
        return None

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


class ZoneInterval(BaseModel):
    """One leg of a journey: a zone, when the shopper entered and left it, and the time spent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zone: str
    entered_at: datetime
    exited_at: datetime
    dwell_s: Annotated[float, Field(ge=0)]


class VisitMessage(Message):
    """A recognised customer's visit; at its end, the journey summary (``path``)."""

    stream: ClassVar[str] = "events/visit"
    schema_name: Literal["visit.v1"] = Field("visit.v1", alias="schema")
    visit_id: str
    customer_id: str
    phase: Literal["started", "ended"]
    started_at: datetime
    ended_at: datetime | None = None
    duration_s: float | None = None
    entry_receiver: str
    receivers: list[str] = []
    path: list[ZoneInterval] = []


class ZoneMessage(Message):
    """A recognised customer moved into a zone (dated from when the zone took the lead)."""

    stream: ClassVar[str] = "events/zone"
    schema_name: Literal["zone.v1"] = Field("zone.v1", alias="schema")
    visit_id: str
    customer_id: str
    zone: str
    from_zone: str | None
    entered_at: datetime
    # Estimated distance to the closest receiver in the zone (log-distance model), metres.
    distance_m: float | None = None


class DwellMessage(Message):
    """A recognised customer has stayed in a zone for the zone's dwell threshold."""

    stream: ClassVar[str] = "events/dwell"
    schema_name: Literal["dwell.v1"] = Field("dwell.v1", alias="schema")
    visit_id: str
    customer_id: str
    zone: str
    entered_at: datetime
    dwell_s: Annotated[float, Field(ge=0)]


class FootfallMessage(Message):
    """Everyone, anonymously: entries, exits and occupancy for one interval."""

    stream: ClassVar[str] = "events/footfall"
    priority: ClassVar[int] = PRIORITY_TELEMETRY
    schema_name: Literal["footfall.v1"] = Field("footfall.v1", alias="schema")
    interval_start: datetime
    interval_end: datetime
    entries: Annotated[int, Field(ge=0)]
    exits: Annotated[int, Field(ge=0)]
    occupancy: Annotated[int, Field(ge=0)]
    customers_recognised: Annotated[int, Field(ge=0)]
    # Everyone heard in the occupancy window at the interval's end, by the zone of the receiver
    # hearing them loudest (recognised shoppers by their tracked zone). Counts only, no identity.
    zones: dict[str, Annotated[int, Field(ge=0)]] = {}


class NotificationMessage(Message):
    """A message for a customer's app or a staff device; drop it after ``expires``."""

    stream: ClassVar[str] = "notifications"
    priority: ClassVar[int] = PRIORITY_NOTIFICATION
    schema_name: Literal["notification.v1"] = Field("notification.v1", alias="schema")
    audience: Literal["customer", "staff"]
    channel: Literal["push", "staff_device"] = "push"
    customer_id: str
    visit_id: str
    template: str
    language: str
    text: str
    data: dict[str, str] = {}
    expires: datetime

    @property
    def expires_at(self) -> float | None:
        return self.expires.timestamp()


class SuppressedMessage(Message):
    """A notification a rule wanted to send and a guard stopped, with the reason (audit trail)."""

    stream: ClassVar[str] = "events/suppressed"
    schema_name: Literal["suppressed.v1"] = Field("suppressed.v1", alias="schema")
    customer_id: str
    visit_id: str
    template: str
    audience: Literal["customer", "staff"]
    reason: str


class OrderMessage(Message):
    """A click-and-collect order's journey in the store: arrived, at the counter, collected."""

    stream: ClassVar[str] = "events/order"
    schema_name: Literal["order.v1"] = Field("order.v1", alias="schema")
    order_id: str
    customer_id: str
    visit_id: str | None
    phase: Literal["arrived", "at_counter", "collected", "counter_wait", "left_uncollected"]
    arrival_to_collection_s: float | None = None
    # counter_wait: how long the shopper has been in the pickup zone, the order still not handed over.
    wait_s: float | None = None
    # left_uncollected: the visit's length and the time spent in the pickup zone.
    time_in_store_s: float | None = None
    time_at_counter_s: float | None = None


class PurchaseMessage(Message):
    """A till receipt of a recognised customer, placed in the visit it happened in (if any)."""

    stream: ClassVar[str] = "events/purchase"
    schema_name: Literal["purchase.v1"] = Field("purchase.v1", alias="schema")
    receipt_id: str
    customer_id: str
    visit_id: str | None
    total: float
    items: int


class StaffAlertMessage(Message):
    """An alert for staff devices about the store, not about a shopper (a queue growing): no
    customer, no visit. Alerts about a shopper are ``notification.v1`` with audience staff."""

    stream: ClassVar[str] = "events/staff_alert"
    priority: ClassVar[int] = PRIORITY_NOTIFICATION
    schema_name: Literal["staff_alert.v1"] = Field("staff_alert.v1", alias="schema")
    template: str
    language: str
    text: str
    zone: str | None = None
    data: dict[str, str] = {}
    expires: datetime

    @property
    def expires_at(self) -> float | None:
        return self.expires.timestamp()


class CheckInMessage(Message):
    """A consenting customer's first visit of the store's local day, for HQ's loyalty system."""

    stream: ClassVar[str] = "events/check_in"
    schema_name: Literal["check_in.v1"] = Field("check_in.v1", alias="schema")
    customer_id: str
    visit_id: str
    local_date: str  # YYYY-MM-DD in the store's time zone: one check-in per customer and date
    reward: str


class RedemptionMessage(Message):
    """A coupon code this store issued, found on a till receipt: receipt -> notification -> visit."""

    stream: ClassVar[str] = "events/redemption"
    schema_name: Literal["redemption.v1"] = Field("redemption.v1", alias="schema")
    receipt_id: str
    customer_id: str
    coupon: str
    notification_event_id: str  # the notification that gave the code
    template: str
    issued_visit_id: str
    issued_at: datetime
    visit_id: str | None  # the visit the receipt belongs to, if the customer is in the store


OutcomeResult = Literal[
    "entered_zone", "zone_not_visited", "reached_counter", "counter_not_reached", "redeemed", "expired",
    "not_measured", "superseded",
]  # fmt: skip


class OutcomeMessage(Message):
    """Whether a customer notification worked, once that is decided (``success`` None: the
    template has no effect the store can observe)."""

    stream: ClassVar[str] = "events/outcome"
    schema_name: Literal["outcome.v1"] = Field("outcome.v1", alias="schema")
    notification_event_id: str
    customer_id: str
    visit_id: str
    template: str
    result: OutcomeResult
    success: bool | None
    after_s: float | None = None  # from the notification to the effect (or to the decision)


class SkippedMessage(Message):
    """A rule that looked at a customer and did not act, and why (no list, out of stock, no
    order ready, outside its zones): with ``suppressed.v1``, why a shopper heard nothing.

    For the store's journey log (``edge-agent journey``) only, never published: one or two per
    visit of every recognised shopper would double what HQ receives about quiet visits, and
    support asks the store's log, where the answer is kept with the visit."""

    stream: ClassVar[str] = "events/skipped"
    priority: ClassVar[int] = PRIORITY_TELEMETRY
    published: ClassVar[bool] = False
    schema_name: Literal["skipped.v1"] = Field("skipped.v1", alias="schema")
    customer_id: str
    visit_id: str
    rule: str
    reason: str


class ErasureMessage(Message):
    """Receipt for an erase command: what was removed from this store. No other message about
    the customer follows."""

    stream: ClassVar[str] = "events/erasure"
    schema_name: Literal["erasure.v1"] = Field("erasure.v1", alias="schema")
    request_id: str
    customer_id: str
    registry: bool
    unsent_messages_removed: Annotated[int, Field(ge=0)]
    journey_entries_removed: Annotated[int, Field(ge=0)]
    open_visit_removed: bool


class GapMessage(Message):
    """Messages this store dropped and HQ will never receive, and why: a known gap, not a loss.

    ``boot_id``/``stream``/``first_seq``..``last_seq`` name the dropped messages' own numbers
    (``dropped_boot_id``, since a gap can belong to an earlier boot than the record itself).
    """

    stream: ClassVar[str] = "events/gap"
    schema_name: Literal["gap.v1"] = Field("gap.v1", alias="schema")
    reason: Literal["expired", "evicted", "dead_letter", "refused"]
    dropped_boot_id: str | None
    dropped_stream: str
    first_seq: int | None
    last_seq: int | None
    count: Annotated[int, Field(ge=1)]


class BeaconStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beacon_id: str
    name: str
    state: BeaconState
    last_seen: datetime | None = None
    last_receiver: str | None = None
    battery_mv: int | None = None
    temperature_c: float | None = None


class BeaconMessage(Message):
    """A fixed store beacon went missing, came back, or reported a low battery."""

    stream: ClassVar[str] = "events/beacon"
    priority: ClassVar[int] = PRIORITY_TELEMETRY
    schema_name: Literal["beacon.v1"] = Field("beacon.v1", alias="schema")
    event: BeaconEvent
    beacon: BeaconStatus
    # moved / in_place: per receiver, how far (dB) its readings of this beacon are from what its
    # other beacons say; a beacon that moved is off at every receiver at once.
    residuals_db: dict[str, float] | None = None


class BeaconFleetMessage(Message):
    """Periodic summary of every configured beacon, so HQ sees a silent fleet too."""

    stream: ClassVar[str] = "events/beacon_fleet"
    priority: ClassVar[int] = PRIORITY_TELEMETRY
    schema_name: Literal["beacon_fleet.v1"] = Field("beacon_fleet.v1", alias="schema")
    present: int
    missing: int
    low_battery: int
    beacons: list[BeaconStatus]


class ReceiverCalibration(BaseModel):
    """One receiver's calibration from the fixed beacons (``core.calibration``).

    Offsets are dB against the reference 1 m power of -59 dBm: ``configured_offset_db`` from the
    configuration's ``measured_power_dbm``, ``offset_db`` as estimated (what zone choice uses)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    receiver: str
    state: ReceiverState
    configured_offset_db: float
    offset_db: float | None
    samples: Annotated[int, Field(ge=0)]
    beacons: Annotated[int, Field(ge=0)]
    # Largest distance (dB) of one beacon's reading from the receiver's estimate.
    residual_db: float | None
    confidence: Annotated[float, Field(ge=0, le=1)]
    # Readings refused as absurd (RSSI outside what receivers report, or far off the model).
    rejected: Annotated[int, Field(ge=0)]


class BeaconCalibration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    beacon_id: str
    state: BeaconCheckState
    receivers: Annotated[int, Field(ge=0)]
    residuals_db: dict[str, float] | None = None


class CalibrationStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receivers: list[ReceiverCalibration]
    beacons: list[BeaconCalibration]


class ReceiverMessage(Message):
    """A receiver's calibration changed in a way HQ should see: it drifted (its offset moved by
    more than ``calibration.drift_threshold_db``), re-converged after a drift, stopped hearing
    the beacons it used to hear (silent), or hears them again."""

    stream: ClassVar[str] = "events/receiver"
    priority: ClassVar[int] = PRIORITY_TELEMETRY
    schema_name: Literal["receiver.v1"] = Field("receiver.v1", alias="schema")
    event: ReceiverEventKind
    # drift: the offset (dB against -59 dBm) before the drift.
    previous_offset_db: float | None = None
    receiver: ReceiverCalibration


class ErrorMessage(Message):
    """A downlink this store rejected, and why (the payload is identified, never echoed)."""

    stream: ClassVar[str] = "errors"
    schema_name: Literal["error.v1"] = Field("error.v1", alias="schema")
    topic: str
    kind: str | None
    message_id: str | None
    reason: str
    # The payload is identified, never echoed: a customers downlink carries identity keys.
    payload_sha256: str
    payload_bytes: int


class ScannerStatus(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    receiver: str
    adapter: str
    mode: str
    running: bool
    last_advertisement: datetime | None
    watchdog_restarts: int
    errors: int
    # Why the last start failed, in a technician's words ("no D-Bus system bus at ...", "BlueZ
    # not running ...", "adapter hci1 not found"); None once the scanner is running again.
    reason: str | None = None


class RemoteStatus(BaseModel):
    """Remote receivers since start: sightings accepted, messages rejected by reason, and the
    receiver ids of the topics a rejected unknown receiver used (at most a few dozen: the ids
    come from the network; more of them are counted under ``unknown_receiver`` only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accepted: int
    # "unknown_receiver" | "too_large" | "not_json" | "invalid" | "clock_skew" | ...
    rejected: dict[str, int]
    unknown_receivers: dict[str, int]
    # Receivers whose clocks are off and whose sightings are re-dated, by how many seconds
    # (``remote.correct_clock_after``); left out when none is.
    clock_offsets: dict[str, float] | None = Field(default=None, exclude_if=lambda value: value is None)


class ClockStep(BaseModel):
    """A wall-clock step the agent saw and followed without ending or opening a visit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at: datetime
    size_s: float


class ClockStatus(BaseModel):
    """How the agent judges its wall clock (``core.wallclock``): trusted or not and why, steps
    seen since start, and its estimate of the error (true time minus the system clock) with the
    sources it came from; ``correction_s`` is what the agent adds to the system clock now."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trusted: bool
    synced: bool | None
    steps: int
    last_step: ClockStep | None = None
    estimated_error_s: float | None = None
    estimate_uncertainty_s: float | None = None
    correction_s: float = 0.0
    sources: list[str]


class StatusMessage(Message):
    """Retained store status: birth and heartbeat (online, with figures) or offline."""

    stream: ClassVar[str] = "status"
    retain: ClassVar[bool] = True
    schema_name: Literal["status.v1"] = Field("status.v1", alias="schema")
    state: StatusState
    agent_version: str
    queue_depth: int | None = None
    queue_by_priority: dict[str, int] | None = None  # "notification" | "transactional" | "telemetry"
    oldest_queued_s: float | None = None
    last_sync: datetime | None = None
    open_visits: int | None = None
    registry_size: int | None = None
    registry_version: int | None = None
    missing_beacons: list[str] | None = None
    # Outbox health: bytes queued, messages dropped by reason since start, and an alarm if full.
    # ``sent``: messages the broker acknowledged since start; ``resent``: published more than once
    # (after a reconnect, a refusal or a stuck acknowledgement), the duplicates HQ may see.
    sent: int | None = None
    resent: int | None = None
    outbox_bytes: int | None = None
    dropped: dict[str, int] | None = None
    alarm: str | None = None
    scanners: list[ScannerStatus] | None = None
    remote: RemoteStatus | None = None
    # The link to the broker as the agent sees it, and its last connection failure since start
    # (host:port and why). ``since``: when the connection this status went out on was made; the
    # last will (``will: true``) is dated then too, as MQTT fixes it at CONNECT (docs/hq.md).
    link: Literal["up", "down"] | None = None
    link_error: str | None = None
    since: datetime | None = None
    will: bool | None = None
    clock: ClockStatus | None = None
    # Receivers' live calibration from the fixed beacons, and the beacons' checks.
    calibration: CalibrationStatus | None = None
    # The database's integrity: "ok", "pending" (the check at start ran out of its time budget
    # and the full one has not finished), or what the full check found (also an ``alarm``).
    integrity: str | None = None
    # Token windows: wanted windows complete (2 x skew + 1 when steady), windows built since
    # start, and rotations that found a wanted window not yet built ahead (each one a stall).
    token_tables: dict[str, int] | None = None


# Every message type the agent publishes (the HQ contract is generated from this list).
UPLINK_MESSAGES: tuple[type[Message], ...] = (
    VisitMessage,
    ZoneMessage,
    DwellMessage,
    FootfallMessage,
    SuppressedMessage,
    OrderMessage,
    PurchaseMessage,
    CheckInMessage,
    RedemptionMessage,
    OutcomeMessage,
    ErasureMessage,
    GapMessage,
    BeaconMessage,
    BeaconFleetMessage,
    ReceiverMessage,
    NotificationMessage,
    StaffAlertMessage,
    ErrorMessage,
    StatusMessage,
)

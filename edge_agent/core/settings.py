"""The agent's configuration as strict pydantic models, one per TOML section. Pure.

Every section forbids unknown keys (a typo must never silently fall back to a default) and is
frozen once loaded. Each default carries a comment saying why it has that value. Validation of a
whole file, with every problem named by its key, is ``core.validation``; reading the file and the
environment is ``adapters.configfile``.
"""

from __future__ import annotations

import string
import zoneinfo
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from edge_agent.core.const import MAX_INFLIGHT_WINDOW
from edge_agent.core.topics import Topics


def _between(low: float, high: float) -> AfterValidator:
    """A range check whose message reads the same for every key (``must be between ...``)."""

    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return AfterValidator(check)


def _check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc
    return name


# Identifiers end up inside MQTT topics, where '/', '+' and '#' would change the topic's meaning.
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Port = Annotated[int, _between(1, 65535)]
Seconds = Annotated[float, _between(0.001, 7 * 86400)]
Dbm = Annotated[int, _between(-127, 20)]


class Section(BaseModel):
    """Base of every section: unknown keys are errors and values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreSettings(Section):
    id: Identifier
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    # Where shoppers come in; the simulator starts and ends every walk there.
    entrance_zone: Identifier | None = None


Point = tuple[float, float]


class ZoneSettings(Section):
    id: Identifier
    name: str = ""
    # Zones a shopper can walk to directly. Symmetric: listing it on one side is enough. With no
    # adjacency anywhere in the file every zone counts as adjacent to every other.
    adjacent: list[Identifier] = []
    # Time in the zone after which a recognised shopper counts as dwelling (default presence.dwell_s).
    dwell_s: Seconds | None = None
    # Floor outline in metres, corners in order; used by the simulator and its ground truth.
    polygon: list[Point] = []


class ReceiverSettings(Section):
    id: Identifier
    zone: Identifier
    adapter: Annotated[str, Field(pattern=r"^hci[0-9]+$")] | None = None
    # Where it hangs, in the zones' coordinates (metres); the simulator needs it.
    position: Point | None = None
    # RSSI this receiver reports for a typical phone 1 m away: calibrates receivers whose
    # antennas and enclosures differ, so zone choice compares distances, not raw dBm.
    measured_power_dbm: Dbm = -59
    # The id of a [[beacons]] entry this receiver itself advertises (an ESP32 node broadcasting
    # an iBeacon): the other receivers' readings of it calibrate them against each other.
    beacon: str | None = None


def _check_identity_key(key: SecretStr) -> SecretStr:
    if len(value := key.get_secret_value()) != 32 or not set(value) <= set(string.hexdigits):
        raise ValueError("must be 32 hex digits (a 16-byte Eddystone-EID identity key)")
    return key


class BeaconSettings(Section):
    """A fixed store beacon: sighted to locate things, never counted as a visitor."""

    id: Annotated[str, Field(min_length=1)]
    name: str = ""
    # An Eddystone-EID beacon's identity key (32 hex digits): the agent then knows the beacon's
    # tokens and decrypts its encrypted TLM (battery, temperature) for beacon health. A secret
    # like the MQTT password: `config show` prints asterisks, it is never logged nor sent.
    identity_key: Annotated[SecretStr, AfterValidator(_check_identity_key)] | None = None
    # Where it is fixed, in the zones' coordinates (metres). A positioned beacon calibrates the
    # receivers that hear it (``[calibration]``); one without a position is watched for health only.
    position: Point | None = None
    # RSSI a reference receiver (one reading -59 dBm for a typical phone at 1 m) reads from it at
    # 1 m. Default: the power its own frames announce (iBeacon measured power, AltBeacon
    # reference RSSI, Eddystone TX power at 0 m less 41 dB), else -59.
    measured_power_dbm: Dbm | None = None


class BeaconHealthSettings(Section):
    # A fixed beacon advertises several times a second: ten silent minutes means it is dead,
    # moved or blocked, not unlucky.
    missing_after_s: Seconds = 600.0
    # CR2032/CR2477 cells fall off a cliff below about 2.5 V; replace before the beacon goes.
    low_battery_mv: Annotated[int, _between(1000, 4000)] = 2500
    summary_interval_s: Seconds = 3600.0


class CalibrationSettings(Section):
    """Receivers calibrated online from the positioned fixed beacons (``core.calibration``).

    On whenever a beacon has a position; each receiver's estimated 1 m power replaces its
    ``measured_power_dbm`` in zone choice as soon as it has ``min_samples``.
    """

    enabled: bool = True
    # Samples older than this no longer count: at a 10 s beacon interval 10 minutes hold about
    # 55 per pair (median error ~0.7 dB at sigma 4), and a median over it moves past a step
    # change after half the window, so a drifted receiver is re-estimated within 5 minutes.
    window_s: Annotated[float, _between(60, 86400)] = 600.0
    # Readings per receiver before its estimate replaces the configured value (median error
    # about 1 dB at sigma 4 dB).
    min_samples: Annotated[int, _between(1, 100_000)] = 30
    # Readings weaker than this are near the radios' sensitivity floor (~ -95 dBm), where the
    # lost weak samples bias the median upwards; a pair the model expects below it (at the
    # receiver's configured power) is not used.
    min_rssi_dbm: Dbm = -85
    # An estimate that moves by more than this within drift_window_s is a drift event (a shelf
    # or a box in front of the receiver): three times the estimate's noise at sigma 4 dB.
    drift_threshold_db: Annotated[float, _between(0.5, 40)] = 3.0
    drift_window_s: Annotated[float, _between(60, 86400)] = 1800.0
    # A beacon whose readings disagree by more than this with every receiver's other beacons
    # moved or was replaced: it is reported and left out, so it cannot miscalibrate anyone.
    moved_threshold_db: Annotated[float, _between(1, 40)] = 4.0
    # A receiver that heard beacons and then none for this long, while other receivers still
    # heard them, is reported as deaf to them (all going quiet at once is the agent not hearing).
    silent_after_s: Annotated[float, _between(60, 86400)] = 600.0
    # How often the estimates are refitted (the sightings' hot path only appends a sample). An
    # estimate over a 10-minute window moves little in a minute, so a drift is still seen within
    # 5-6 minutes; a fit (~100 us) a minute costs a replayed day 4-10 % (benchmarks/README.md).
    update_interval_s: Annotated[float, _between(1, 3600)] = 60.0
    # Readings further than this from the receiver's current estimate are absurd (a wrong
    # unit, a broken report) and are rejected, counted, rather than fitted.
    max_residual_db: Annotated[float, _between(5, 100)] = 25.0


class TlsSettings(Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttSettings(Section):
    host: str = "127.0.0.1"
    port: Port = 1883
    # amqtt (the demo's embedded broker) speaks only 3.1.1; production brokers speak 5.
    protocol: Literal["3.1.1", "5"] = "5"
    client_id: str | None = None
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")] = "retail/v1"
    username: str | None = None
    password: SecretStr | None = None
    keepalive_s: Annotated[int, _between(5, 3600)] = 30
    # How long the broker keeps our session (subscriptions, queued downlinks) while we are away.
    session_expiry_s: Annotated[int, _between(0, 30 * 86400)] = 7 * 86400
    inflight_window: Annotated[int, _between(1, MAX_INFLIGHT_WINDOW)] = 100
    # A message the broker refuses this many times (PUBACK with a failure code) is moved to the
    # dead-letter table and reported as a gap, so one poisoned row cannot block the queue.
    dead_letter_after: Annotated[int, _between(1, 1000)] = 5
    reconnect_min_s: Annotated[float, _between(0.05, 600)] = 1.0
    reconnect_max_s: Annotated[float, _between(0.05, 3600)] = 60.0
    tls: TlsSettings = TlsSettings()


class StorageSettings(Section):
    path: Path = Path("/var/lib/edge-agent/agent.db")
    # Sightings are processed and their events committed in groups: one fsync per group.
    group_max_events: Annotated[int, _between(1, 100_000)] = 500
    group_max_delay_s: Annotated[float, _between(0.001, 10)] = 0.2
    # The outbox's cap (payload bytes). Past it, expired rows go first, then telemetry oldest
    # first; notifications and transactional events are never evicted: at the cap new ones are
    # refused, logged at ERROR and raised as an alarm in the status. Every drop is a gap.v1 record.
    outbox_max_bytes: Annotated[int, _between(4096, 64 * 2**30)] = 256 * 2**20
    # Room kept in a file beside the database and given up when the filesystem fills, so the
    # WAL can still be checkpointed and telemetry evicted (a full WAL database cannot even
    # delete). Rebuilt when the filesystem has room again. 0 turns the reserve off.
    disk_reserve_bytes: Annotated[int, _between(0, 4 * 2**30)] = 32 * 2**20
    # How long `edge-agent journey` can look back: touchpoints older than this are deleted.
    journey_days: Annotated[float, _between(0.01, 365)] = 7.0


class BleSettings(Section):
    """Local Bluetooth adapters (receivers with an ``adapter``) scanned with bleak/BlueZ."""

    # Passive scanning (BlueZ advertisement monitor) sends no scan requests and saves power,
    # but hears only frames matching its patterns (Apple and Eddystone); active hears all.
    mode: Literal["active", "passive"] = "active"
    # A store adapter hears several advertisements a second; this long without one means
    # BlueZ or the adapter stopped delivering (bleak does not say so), so the scan restarts.
    watchdog_s: Seconds = 30.0
    restart_backoff_min_s: Annotated[float, _between(0.05, 600)] = 1.0
    restart_backoff_max_s: Annotated[float, _between(0.05, 3600)] = 60.0
    # RSSI-only updates of one device pass at most this often; payload changes always pass.
    throttle_s: Annotated[float, _between(0, 60)] = 1.0


class GattSettings(Section):
    """Reading the app's token over GATT from iPhones whose app runs in the background.

    Off until ``overflow_bit`` is set: the bit iOS sets in Apple's overflow area for the app's
    service UUID (Apple does not publish the hash; read it from a capture of the app, e.g. the
    "overflow bits" ``edge-agent scan`` shows). Bits are numbered as in D. G. Young's published
    table: mask byte index x 8 + bit within the byte, least significant bit first (``core.frames``).
    """

    overflow_bit: Annotated[int, _between(0, 127)] | None = None
    service_uuid: str = "6e40a000-b5a3-f393-e0a9-e50e24dcca9e"
    token_uuid: str = "6e40a001-b5a3-f393-e0a9-e50e24dcca9e"
    # Each connection takes the radio away from scanning; two at a time keeps sightings flowing.
    max_connections: Annotated[int, _between(1, 8)] = 2
    connect_timeout_s: Annotated[float, _between(1, 60)] = 10.0
    retry_min_s: Annotated[float, _between(0.05, 3600)] = 5.0
    retry_max_s: Annotated[float, _between(0.05, 86400)] = 300.0
    # iOS rotates its address about every 15 minutes; a token is kept no longer than that.
    cache_s: Seconds = 900.0


class RemoteSettings(Section):
    """Receivers on the store's MQTT (ESP32 nodes); the receiver id is the topic's last level."""

    # {mqtt.topic_prefix}/stores/{store.id}/sightings/{receiver}: one trace line or an array.
    generic: bool = True
    # ESPresense nodes: {espresense_prefix}/devices/{id}/{room}, the room being the receiver id.
    espresense: bool = False
    espresense_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")] = "espresense"
    # A generic sighting dated further than this from the local clock is rejected (counted as
    # clock_skew): an hour ahead left a visit open for good, an hour back counted a footfall
    # entry into a closed interval. A node synced by SNTP is within a second; 30 s leaves room
    # for delivery delay and a node's drift between syncs, and stays well under
    # presence.absence_timeout_s (120 s by default).
    max_clock_skew_s: Seconds = 30.0
    # A node whose clock is off by more than max_clock_skew_s has its sightings re-dated by its
    # offset once this many of its messages agree on one (core.receiverclocks): five seconds of
    # a node heard once a second, while its visits go on. 0: drop them until the node is fixed.
    correct_clock_after: Annotated[int, _between(0, 1000)] = 5


class IdentitySettings(Section):
    # Eddystone-EID rotation exponent K: tokens rotate every 2**K seconds (10 -> 17 minutes).
    rotation_exponent: Annotated[int, _between(0, 15)] = 10
    # Neighbouring windows accepted either side of the current one, for phone clock skew.
    skew_windows: Annotated[int, _between(0, 3)] = 1


class PresenceSettings(Section):
    # Weaker sightings are people walking past the shop window, not visitors.
    entry_rssi_dbm: Dbm = -85
    absence_timeout_s: Seconds = 120.0
    # RSSI smoothing per (shopper, receiver): "kalman" (default, best zone accuracy on the
    # simulator, see README), "median" over filter_window_s, or "none". The defaults below were
    # tuned on a simulated day (seed 11) and checked on another (seed 7).
    filter: Literal["kalman", "median", "none"] = "kalman"
    filter_window_s: Seconds = 6.0
    # Kalman: how fast the true level may drift (dB^2 per second) and the radio's noise (dB^2).
    kalman_process_noise: Annotated[float, _between(0.001, 1000)] = 20.0
    kalman_measurement_noise: Annotated[float, _between(0.001, 1000)] = 25.0
    # Log-distance path loss exponent: 2 in free space, 2-3 in an open shop floor.
    path_loss_exponent: Annotated[float, _between(1.0, 6.0)] = 2.2
    # A new zone must beat the current one by this margin for this long before the shopper moves.
    zone_margin_db: Annotated[float, _between(0.0, 30.0)] = 2.0
    zone_min_s: Annotated[float, _between(0.0, 600.0)] = 2.0
    # A receiver that has not heard the shopper for this long no longer votes on the zone.
    stale_s: Seconds = 8.0
    dwell_s: Seconds = 60.0


class FootfallSettings(Section):
    interval_s: Seconds = 900.0
    # Occupancy counts devices heard this recently; see README "Footfall" for why it is short.
    occupancy_window_s: Seconds = 30.0


class ClickAndCollectSettings(Section):
    enabled: bool = True
    staff_alerts: bool = True
    # A "your order is ready at counter B" message sent after the shopper left helps nobody.
    notification_ttl_s: Seconds = 600.0
    # Staff hear "customer at the counter" when the shopper reaches the order's pickup zone
    # (orders.v1 pickup_zone) or, when the order names none, this zone.
    pickup_zone: Identifier | None = None


class ShelfLocationSettings(Section):
    enabled: bool = True
    # "visit": on arrival, every listed item in stock anywhere in the store; "zone": on entering
    # a zone, the listed items shelved in it.
    trigger: Literal["visit", "zone"] = "visit"
    max_items: Annotated[int, _between(1, 20)] = 3
    notification_ttl_s: Seconds = 300.0
    # The push worked if the shopper entered a suggested item's zone this soon after it: a
    # quarter of an hour covers walking a large store, longer credits chance visits.
    outcome_window_s: Seconds = 900.0


class PostPurchaseSettings(Section):
    enabled: bool = True
    feedback_url: str = "https://example.com/feedback"
    notification_ttl_s: Seconds = 3600.0


class CounterWaitSettings(Section):
    """A click-and-collect shopper left waiting in the pickup zone: staff are told again."""

    enabled: bool = True
    # A handover takes a minute or two; five minutes at the counter is a shopper kept waiting.
    after_s: Seconds = 300.0
    # Staff are reminded this often while the shopper still waits; more often is nagging.
    repeat_s: Seconds = 300.0


class LeftUncollectedSettings(Section):
    """A visit ends with the customer's ready order still not handed over."""

    enabled: bool = True
    staff_alerts: bool = True


class AssistSettings(Section):
    """A shopper lingering in a department that sells advice (staff ``staff.assist``)."""

    enabled: bool = True
    # Zones where help is offered; none means the rule is off.
    zones: list[Identifier] = []
    # Three minutes in one department is past browsing: the shopper may be stuck choosing.
    after_s: Seconds = 180.0
    notification_ttl_s: Seconds = 300.0


class QueueSettings(Section):
    """Everyone heard in a zone (anonymously) above a threshold: "open another till"."""

    enabled: bool = True
    # The zones watched (the checkout); none means the rule is off.
    zones: list[Identifier] = []
    # Alert when this many people stay in the zone for ``for_s``; re-armed only once it falls to
    # ``clear_at`` or fewer (hysteresis: one alert per queue, not one per tick around the mark).
    above: Annotated[int, _between(1, 10000)] = 6
    clear_at: Annotated[int, _between(0, 10000)] = 3
    # A crowd passing through for a few seconds is not a queue.
    for_s: Annotated[float, _between(0.0, 3600.0)] = 30.0
    notification_ttl_s: Seconds = 300.0

    @model_validator(mode="after")
    def _hysteresis(self) -> QueueSettings:
        if self.clear_at >= self.above:
            raise ValueError(
                f"clear_at ({self.clear_at}) must be below above ({self.above}): the alert re-arms there"
            )
        return self


class CheckInSettings(Section):
    """The first visit of a local day of a customer with marketing consent: a loyalty check-in."""

    # Off until the store takes part in the loyalty programme (HQ must honour the rewards).
    enabled: bool = False
    # What the customer is told they earned (shown in the check-in notification and check_in.v1).
    reward: Annotated[str, Field(max_length=200)] = "10 points for your visit today."
    # Give a coupon with the check-in: its code is this prefix and a part unique to the
    # notification, so a redemption names the very notification that issued it. None: no coupon.
    coupon_prefix: Annotated[str, Field(pattern=r"^[A-Z0-9-]{1,16}$")] | None = None
    # A coupon unredeemed after this long is reported expired (a fortnight: two weekly shops).
    coupon_valid_s: Annotated[float, _between(60.0, 366 * 86400.0)] = 14 * 86400.0
    notification_ttl_s: Seconds = 600.0


HHMM = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class GuardSettings(Section):
    """What every customer notification must pass (staff alerts are operational: not capped)."""

    # No customer notification between these local times (store.timezone); equal means none.
    quiet_hours_start: HHMM = "21:00"
    quiet_hours_end: HHMM = "08:00"
    max_per_visit: Annotated[int, _between(1, 50)] = 3
    max_per_day: Annotated[int, _between(1, 100)] = 5
    min_gap_s: Annotated[float, _between(0.0, 86400.0)] = 120.0


class RulesSettings(Section):
    # Language of customer notifications when the registry gives none for the customer.
    language: Literal["en", "it"] = "en"
    guards: GuardSettings = GuardSettings()
    click_and_collect: ClickAndCollectSettings = ClickAndCollectSettings()
    shelf_location: ShelfLocationSettings = ShelfLocationSettings()
    post_purchase: PostPurchaseSettings = PostPurchaseSettings()
    counter_wait: CounterWaitSettings = CounterWaitSettings()
    left_uncollected: LeftUncollectedSettings = LeftUncollectedSettings()
    assist: AssistSettings = AssistSettings()
    queue: QueueSettings = QueueSettings()
    check_in: CheckInSettings = CheckInSettings()
    # Override any shipped template text: [rules.templates."cnc.arrival.customer"] en = "..."
    templates: dict[str, dict[Literal["en", "it"], str]] = {}


class SchedulerSettings(Section):
    tick_interval_s: Seconds = 1.0
    heartbeat_interval_s: Seconds = 60.0


class ClockSettings(Section):
    """How the agent judges its own wall clock (``core.wallclock``, README "Time")."""

    # Where the system says whether NTP has synchronised the clock: "adjtimex" (the kernel's
    # flag, which chrony, ntpd and systemd-timesyncd all set), "none" (no way to tell: trusted
    # until a step or the phones disagree), or "file:PATH", synchronised while PATH exists
    # (systemd-timesyncd touches /run/systemd/timesync/synchronized).
    sync_source: Annotated[str, Field(pattern=r"^(adjtimex|none|file:.+)$")] = "adjtimex"
    # A wall-clock move beyond this between two ticks is a step, not drift: NTP slews at most
    # 0.5 ms/s, and 2 s stays far below presence.absence_timeout_s.
    step_tolerance_s: Annotated[float, _between(0.1, 3600.0)] = 2.0
    # While the clock is not NTP-synchronised, unresolved tokens are looked up this many windows
    # beyond identity.skew_windows either side (4 at K=10: a box up to ~85 min off is noticed).
    # Each window is one AES block per customer, built at most one per tick; 0 turns it off.
    token_search_windows: Annotated[int, _between(0, 16)] = 4
    # Customers whose tokens must agree before the phones are believed over the box clock: one
    # phone with its own clock wrong must not move the store's.
    min_token_customers: Annotated[int, _between(1, 1000)] = 3
    # The phones' estimate corrects the clock only once it is this tight (half-width): a store
    # day's reports then sit within a minute of the truth, as the phones themselves do.
    max_estimate_uncertainty_s: Annotated[float, _between(1.0, 3600.0)] = 60.0
    # Phones' own clocks are within tens of seconds of the truth: an estimate closer than this
    # to the box clock is agreement, not an error.
    token_tolerance_s: Annotated[float, _between(1.0, 3600.0)] = 60.0
    # Remote receivers that must agree on one offset from the box (and be most of those off)
    # before a box that says NTP has not synchronised it is corrected by them: two independent
    # SNTP clients agreeing outvote one unsynchronised box.
    min_agreeing_receivers: Annotated[int, _between(1, 100)] = 2


class AgentConfig(Section):
    store: StoreSettings
    zones: list[ZoneSettings] = []
    receivers: list[ReceiverSettings] = []
    beacons: list[BeaconSettings] = []
    beacon_health: BeaconHealthSettings = BeaconHealthSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    mqtt: MqttSettings = MqttSettings()
    storage: StorageSettings = StorageSettings()
    ble: BleSettings = BleSettings()
    gatt: GattSettings = GattSettings()
    remote: RemoteSettings = RemoteSettings()
    identity: IdentitySettings = IdentitySettings()
    presence: PresenceSettings = PresenceSettings()
    footfall: FootfallSettings = FootfallSettings()
    rules: RulesSettings = RulesSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    clock: ClockSettings = ClockSettings()

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"edge-agent-{self.store.id}"

    @property
    def topics(self) -> Topics:
        """The store's topics: every part that publishes or subscribes takes this one."""
        return Topics(self.mqtt.topic_prefix, self.store.id)

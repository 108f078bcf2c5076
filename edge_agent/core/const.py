"""Numbers that encode a decision, each with the reason it has that value."""

from __future__ import annotations

from typing import Final

# Exit status for an invalid configuration: sysexits' EX_CONFIG. systemd's
# RestartPreventExitStatus uses it so a broken file does not restart-loop the unit.
EXIT_CONFIG: Final = 78

# Bluetooth SIG company identifier of Apple, the carrier of iBeacon frames.
COMPANY_APPLE: Final = 0x004C

# 16-bit service UUID of Eddystone, expanded to the 128-bit form bleak reports.
EDDYSTONE_SERVICE_UUID: Final = "0000feaa-0000-1000-8000-00805f9b34fb"

# paho's message ids wrap at 65,535 and silently overwrite older in-flight messages.
# The uplink keeps far fewer in flight; SQLite, not paho, is the queue.
MAX_INFLIGHT_WINDOW: Final = 1000

# Outbox priorities: lower is sent first. Notifications help a shopper only while they
# are in the store; visits and orders are business records; telemetry can wait or go.
PRIORITY_NOTIFICATION: Final = 0
PRIORITY_TRANSACTIONAL: Final = 1
PRIORITY_TELEMETRY: Final = 2
PRIORITY_NAMES: Final = {
    PRIORITY_NOTIFICATION: "notification",
    PRIORITY_TRANSACTIONAL: "transactional",
    PRIORITY_TELEMETRY: "telemetry",
}

# A downlink larger than this is refused before parsing: real registries arrive in batches,
# and an unbounded payload is the cheapest way to exhaust a store box's memory.
MAX_DOWNLINK_BYTES: Final = 1_048_576

# Coupon codes the journey rules issued and may yet see redeemed. A store issues a few hundred
# a day and a code lives at most its validity; 20,000 is weeks of a busy store in a few MB,
# and past it the oldest code is forgotten (reported expired) rather than memory growing.
MAX_ISSUED_COUPONS: Final = 20_000

# Notifications whose outcome is not decided yet (shelf pushes waiting for a zone, arrivals
# waiting for the counter). Each is decided within its window or at the visit's end, so a
# few hundred are open at once; the bound only stops a pathological feed.
MAX_PENDING_OUTCOMES: Final = 10_000

# Customers' last check-in date, kept to refuse a second check-in the same local day. One
# entry per customer seen today is enough; the oldest go first past this many.
MAX_CHECK_INS: Final = 50_000

# A shopper unheard for longer than this is no longer waiting at a counter or lingering in a
# zone: phones advertise several times a second, so ten silent seconds means they walked off
# (the visit itself ends only after presence.absence_timeout_s).
STILL_HERE_S: Final = 10.0

# Queue alerts count the phones heard in a zone this recently, not footfall's occupancy window:
# a crowd that left must stop counting within seconds, or "open another till" comes too late.
QUEUE_HEARD_S: Final = 10.0

# Registry slots per slice of a token-window build between sightings: about 3.5 ms on the store
# box (two AES blocks and a table insert per slot, ~1.7 µs), so a sighting that arrives during a
# slice waits far less than the 50 ms a click-and-collect arrival may; a million customers'
# window then takes ~490 slices, spread over a rotation window of minutes.
TOKEN_SLICE_SLOTS: Final = 2048

# Bounds on what the agent remembers per address, receipt or customer, so months of traffic
# leave memory as it was after the first days (issue: "nothing grows").
# GATT token cache and retry backoff: addresses rotate every ~15 min, so an entry whose address
# has not come back within its expiry (cache) or twice its backoff (retry) never will; they are
# swept every GATT_SWEEP_S, and at most GATT_MAX_ADDRESSES are kept (a busy store hears a few
# hundred iPhones at once; the oldest go first beyond that).
GATT_SWEEP_S: Final = 60.0
GATT_MAX_ADDRESSES: Final = 10_000
# Receipt ids remembered to drop HQ's resends: HQ resends within minutes or hours, and a busy
# store rings a few thousand receipts a day, so this covers weeks; the oldest are forgotten.
RECEIPTS_REMEMBERED: Final = 100_000
# Addresses remembered per fleet beacon for its telemetry: a beacon that randomises its address
# leaves one behind every rotation; only its most recent ones can still send TLM frames.
ADDRESSES_PER_BEACON: Final = 16
# A busy store may never leave the main loop idle: a slice then runs at least this often between
# sightings anyway (a million customers' next window in ~25 s of a saturated loop, against a
# rotation window of 17 min), costing a sighting at most one slice's wait each time.
TOKEN_SLICE_GAP_S: Final = 0.05
# After a shopper's notification is committed, no slice runs for this long (unless the window of
# now is missing): the link thread that publishes it needs the GIL a few times (poll, read the
# due rows, publish, write), and each turn waited up to the interpreter's 5 ms switch interval
# behind the slices. Measured at a million customers: 20-30 ms from commit to publish while a
# rotation's window was being built, ~1 ms when the loop was idle.
URGENT_QUIET_S: Final = 0.05

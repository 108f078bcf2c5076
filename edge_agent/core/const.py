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

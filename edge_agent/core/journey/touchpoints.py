"""One line per touchpoint of a customer's journey, for support staff (``edge-agent journey``).

Every message about a recognised customer (visit, zone, dwell, notification sent or suppressed,
a rule that did not act and why, order, purchase, check-in, redemption, a notification's
outcome) becomes a short human-readable line kept in the store's SQLite for
``storage.journey_days``. Pure: message in, (customer, visit, time, kind, detail) out.

A line is dated when it happened to the shopper, which is not always when its message was
emitted: a zone line when the shopper entered the zone (``entered_at``: a move is emitted once
the zone has held the lead for ``presence.zone_min_s``, so later), a dwell line when the
shopper had stayed in the zone for its dwell threshold (``entered_at + dwell_s``: the moment a
dwell offer fires, so it sits just before the notification it caused, the zone line above it
giving the time of entry). Every other line is dated by its message. The journey is read in
the order of these times.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.core.events import (
    CheckInMessage,
    DwellMessage,
    Message,
    NotificationMessage,
    OrderMessage,
    OutcomeMessage,
    PurchaseMessage,
    RedemptionMessage,
    SkippedMessage,
    SuppressedMessage,
    VisitMessage,
    ZoneMessage,
)


@dataclass(frozen=True, slots=True)
class Touchpoint:
    customer_id: str
    visit_id: str | None
    ts: float
    kind: str
    detail: str


def touchpoint(message: Message) -> Touchpoint | None:
    """The journey line a message makes, or None for messages about nobody in particular."""
    detail: str
    if isinstance(message, VisitMessage):
        if message.phase == "started":
            kind, detail = "entry", f"visit started, first heard by {message.entry_receiver}"
        else:
            path = " > ".join(f"{leg.zone} {leg.dwell_s / 60:.1f} min" for leg in message.path)
            kind, detail = (
                "exit",
                f"visit ended after {(message.duration_s or 0) / 60:.1f} min: {path or '-'}",
            )
    elif isinstance(message, ZoneMessage):
        kind, detail = (
            "zone",
            f"entered {message.zone}" + (f" from {message.from_zone}" if message.from_zone else ""),
        )
    elif isinstance(message, DwellMessage):
        kind, detail = "dwell", f"dwelling in {message.zone} ({message.dwell_s:.0f} s)"
    elif isinstance(message, NotificationMessage):
        kind = "notification"
        detail = f"to {message.audience} [{message.template}, {message.language}]: {message.text}"
    elif isinstance(message, SuppressedMessage):
        kind, detail = "suppressed", f"{message.template} to {message.audience} not sent: {message.reason}"
    elif isinstance(message, OrderMessage):
        kind, detail = "order", _order_detail(message)
    elif isinstance(message, PurchaseMessage):
        kind, detail = (
            "purchase",
            f"receipt {message.receipt_id}: {message.items} items, total {message.total:.2f}",
        )
    else:
        line = _rule_line(message)
        if line is None:
            return None
        kind, detail = line
    visit_id = getattr(message, "visit_id", None)
    customer_id: str = getattr(message, "customer_id")  # noqa: B009  # every kind above names one
    return Touchpoint(customer_id, visit_id, _happened_at(message), kind, detail)


def _happened_at(message: Message) -> float:
    """When the touchpoint happened to the shopper (see the module's docstring), Unix seconds."""
    if isinstance(message, ZoneMessage):
        return message.entered_at.timestamp()
    if isinstance(message, DwellMessage):
        return message.entered_at.timestamp() + message.dwell_s
    return message.ts.timestamp()


def _order_detail(message: OrderMessage) -> str:
    detail = f"order {message.order_id} {message.phase.replace('_', ' ')}"
    if message.arrival_to_collection_s is not None:
        detail += f" ({message.arrival_to_collection_s / 60:.1f} min after arrival)"
    if message.wait_s is not None:
        detail += f" ({message.wait_s / 60:.1f} min at the counter)"
    if message.time_in_store_s is not None:
        detail += (
            f" ({message.time_in_store_s / 60:.1f} min in store,"
            f" {(message.time_at_counter_s or 0.0) / 60:.1f} min at the counter)"
        )
    return detail


def _rule_line(message: Message) -> tuple[str, str] | None:
    """The lines of the rules that act on the journey: a rule not acting, a check-in, a coupon
    redeemed, a notification's outcome."""
    if isinstance(message, SkippedMessage):
        return "not fired", f"{message.rule} did not act: {message.reason}"
    if isinstance(message, CheckInMessage):
        return "check-in", f"loyalty check-in for {message.local_date}: {message.reward}"
    if isinstance(message, RedemptionMessage):
        return (
            "redemption",
            f"coupon {message.coupon} redeemed on receipt {message.receipt_id} ({message.template})",
        )
    if isinstance(message, OutcomeMessage):
        return "outcome", f"{message.template}: {message.result.replace('_', ' ')}"
    return None

"""What the store does with a recognised shopper: the rules of the journey. Pure.

- Click-and-collect: a customer with a ready order starts a visit -> the customer is told where
  to collect, staff to prepare the order; reaching the pickup zone -> staff "customer at the
  counter"; HQ marking the order ``collected`` closes it with the arrival-to-collection time.
- Shelf location: on arrival (or on entering a zone) the in-stock items of the customer's list,
  with aisle and shelf, at most ``max_items``, never the same item twice in a visit.
- Post-purchase: a receipt of a customer who is in the store -> at the end of the visit a
  thank-you, a related-product coupon from ``offers`` and a feedback link.

Every customer notification passes the guards (``guards``); one they stop becomes a
``suppressed.v1`` record with the reason. Orders, purchases and notifications carry the
``visit_id``, so HQ can lay them into one journey with the visit's zone and dwell events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, cast
from zoneinfo import ZoneInfo

from edge_agent.core.downlinks import (
    Downlink,
    Handlers,
    ListsDownlink,
    OfferRecord,
    OffersDownlink,
    OrdersDownlink,
    PlanogramDownlink,
    PlanogramItem,
    ReceiptRecord,
    ReceiptsDownlink,
    ShoppingList,
)
from edge_agent.core.events import (
    Envelopes,
    Message,
    NotificationMessage,
    OrderMessage,
    PurchaseMessage,
    SuppressedMessage,
    utc,
)
from edge_agent.core.identity import Customer
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.journey.templates import Templates
from edge_agent.core.presence import OpenVisit
from edge_agent.core.settings import RulesSettings

OrderPhase = Literal["arrived", "at_counter", "collected"]
# Where a receipt's customer is in the store now (None: not in the store).
VisitOf = Callable[[str], OpenVisit | None]
# The rule that applies each downlink kind the journey rules hold (AppliedBy.JOURNEY).
JOURNEY_RULES: Handlers[JourneyRules, [float, VisitOf], list[Message]] = Handlers("journey rules")


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    customer_id: str
    status: str  # ready | collected | cancelled
    pickup_point: str
    pickup_zone: str | None = None
    version: int = 0


@dataclass(slots=True)
class _Arrival:
    visit_id: str
    at: float
    at_counter: bool = False


class JourneyRules:
    def __init__(self, settings: RulesSettings, store_id: str, timezone: str, ids: EventIdFactory) -> None:
        self._store_id = store_id
        self._tz = ZoneInfo(timezone)
        self._ids = ids
        self._envelope = Envelopes(store_id, ids)
        self._guard = NotificationGuard(settings.guards, timezone)
        self.orders: dict[str, Order] = {}
        self.lists: dict[str, ShoppingList] = {}
        self.planogram: dict[str, PlanogramItem] = {}
        self.offers: dict[str, OfferRecord] = {}
        self._receipts_seen: set[str] = set()
        self._arrivals: dict[str, _Arrival] = {}  # order id -> arrival of its customer
        self._suggested: defaultdict[str, set[str]] = defaultdict(set)  # visit id -> SKUs
        self._purchases: defaultdict[str, list[ReceiptRecord]] = defaultdict(list)  # visit id -> receipts
        self.retune(settings)

    def retune(self, settings: RulesSettings) -> None:
        self._settings = settings
        # The language keys are Literal["en", "it"], which Templates reads as plain strings.
        self._templates = Templates(cast(Mapping[str, Mapping[str, str]], settings.templates))
        self._guard.retune(settings.guards)

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: the guards' times and pending arrivals move with
        the clock, so a wait measured across it (arrival to collection) keeps its length."""
        self._guard.shift(delta_s)
        for arrival in self._arrivals.values():
            arrival.at += delta_s

    # ------------------------------------------------------------------ downlinks

    def apply(self, downlink: Downlink, now: float, visit_of: VisitOf) -> list[Message]:
        """Take a validated downlink in; returns what it causes (a purchase, a collection).

        Each kind's rule is the method below marked ``@JOURNEY_RULES.handles`` for its model.
        """
        return JOURNEY_RULES.apply(self, downlink, now, visit_of)

    @JOURNEY_RULES.handles(ListsDownlink)
    def _apply_lists(self, downlink: ListsDownlink, now: float, visit_of: VisitOf) -> list[Message]:
        for shopping_list in downlink.lists:
            held = self.lists.get(shopping_list.customer_id)
            if held is None or shopping_list.version >= held.version:
                self.lists[shopping_list.customer_id] = shopping_list
        return []

    @JOURNEY_RULES.handles(PlanogramDownlink)
    def _apply_planogram(self, downlink: PlanogramDownlink, now: float, visit_of: VisitOf) -> list[Message]:
        if downlink.full:
            self.planogram.clear()
        for sku in downlink.remove:
            self.planogram.pop(sku, None)
        self.planogram.update({item.sku: item for item in downlink.items})
        return []

    @JOURNEY_RULES.handles(OffersDownlink)
    def _apply_offers(self, downlink: OffersDownlink, now: float, visit_of: VisitOf) -> list[Message]:
        if downlink.full:
            self.offers.clear()
        for offer_id in downlink.remove:
            self.offers.pop(offer_id, None)
        self.offers.update({offer.offer_id: offer for offer in downlink.offers})
        return []

    @JOURNEY_RULES.handles(OrdersDownlink)
    def _apply_orders(self, downlink: OrdersDownlink, now: float, visit_of: VisitOf) -> list[Message]:
        messages: list[Message] = []
        for record in downlink.orders:
            held = self.orders.get(record.order_id)
            if held is not None and record.version < held.version:
                continue  # an older state of the order arriving late
            self.orders[record.order_id] = Order(
                record.order_id, record.customer_id, record.status, record.pickup_point,
                record.pickup_zone, record.version,
            )  # fmt: skip
            arrival = self._arrivals.pop(record.order_id, None) if record.status != "ready" else None
            if arrival is not None and record.status == "collected":
                messages.append(
                    self._order_event(record.order_id, record.customer_id, arrival.visit_id, "collected", now,
                                      arrival_to_collection_s=round(now - arrival.at, 3))
                )  # fmt: skip
        return messages

    @JOURNEY_RULES.handles(ReceiptsDownlink)
    def _apply_receipts(self, downlink: ReceiptsDownlink, now: float, visit_of: VisitOf) -> list[Message]:
        messages: list[Message] = []
        for receipt in downlink.receipts:
            if receipt.receipt_id in self._receipts_seen:
                continue  # HQ resent it
            self._receipts_seen.add(receipt.receipt_id)
            visit = visit_of(receipt.customer_id)
            if visit is not None:
                self._purchases[visit.visit_id].append(receipt)
            messages.append(
                PurchaseMessage(
                    **self._envelope.at(now),
                    receipt_id=receipt.receipt_id, customer_id=receipt.customer_id,
                    visit_id=None if visit is None else visit.visit_id, total=receipt.total,
                    items=sum(item.quantity for item in receipt.items),
                )
            )  # fmt: skip
        return messages

    # ------------------------------------------------------------------ presence

    def visit_started(self, visit: OpenVisit, customer: Customer, now: float) -> list[Message]:
        messages = self._click_and_collect_arrival(visit, customer, now)
        shelf = self._settings.shelf_location
        if shelf.enabled and shelf.trigger == "visit":
            messages += self._shelf_location(visit, customer, now, zone=None)
        return messages

    def zone_entered(self, visit: OpenVisit, customer: Customer, zone: str, now: float) -> list[Message]:
        messages = self._click_and_collect_counter(visit, customer, zone, now)
        shelf = self._settings.shelf_location
        if shelf.enabled and shelf.trigger == "zone":
            messages += self._shelf_location(visit, customer, now, zone=zone)
        return messages

    def visit_ended(self, visit: OpenVisit, customer: Customer | None, now: float) -> list[Message]:
        self._suggested.pop(visit.visit_id, None)
        receipts = self._purchases.pop(visit.visit_id, [])
        messages: list[Message] = []
        if customer is not None and receipts and self._settings.post_purchase.enabled:
            messages.append(self._thank_you(visit, customer, receipts, now))
        self._guard.visit_ended(visit.subject.id, visit.visit_id)
        return messages

    def snapshot_downlinks(self) -> list[Downlink]:
        """Lists, planogram and offers as they stand, as downlinks that rebuild them at start."""
        snapshot: list[Downlink] = [
            PlanogramDownlink.model_validate(
                {"schema": "planogram.v1", "message_id": "snapshot", "full": True,
                 "items": list(self.planogram.values())}
            ),
            OffersDownlink.model_validate(
                {"schema": "offers.v1", "message_id": "snapshot", "full": True,
                 "offers": list(self.offers.values())}
            ),
        ]  # fmt: skip
        if self.lists:
            snapshot.append(
                ListsDownlink.model_validate(
                    {"schema": "lists.v1", "message_id": "snapshot", "lists": list(self.lists.values())}
                )
            )
        return snapshot

    def forget_customer(self, customer_id: str) -> None:
        """Erasure or consent withdrawn: nothing more about this customer from the rules."""
        self.lists.pop(customer_id, None)
        self._guard.forget(customer_id)
        for order_id in [o.order_id for o in self.orders.values() if o.customer_id == customer_id]:
            self.orders.pop(order_id, None)
            self._arrivals.pop(order_id, None)

    # ------------------------------------------------------------------ the rules

    def _click_and_collect_arrival(self, visit: OpenVisit, customer: Customer, now: float) -> list[Message]:
        settings = self._settings.click_and_collect
        if not settings.enabled:
            return []
        messages: list[Message] = []
        for order in self.orders.values():
            if order.customer_id != customer.customer_id or order.status != "ready":
                continue
            if order.order_id in self._arrivals:
                continue  # announced in this or an earlier visit, not collected yet
            self._arrivals[order.order_id] = _Arrival(visit.visit_id, now)
            messages.append(
                self._order_event(order.order_id, customer.customer_id, visit.visit_id, "arrived", now)
            )
            fields = {"order_id": order.order_id, "pickup_point": order.pickup_point}
            data = {"order_id": order.order_id, "pickup_point": order.pickup_point}
            ttl = settings.notification_ttl_s
            messages.append(
                self._notify(customer, visit, "cnc.arrival.customer", "service", now, ttl, data, fields)
            )
            if settings.staff_alerts:
                messages.append(
                    self._notify(customer, visit, "cnc.arrival.staff", "service", now,
                                 settings.notification_ttl_s, data, fields, staff=True)
                )  # fmt: skip
        return messages

    def _click_and_collect_counter(
        self, visit: OpenVisit, customer: Customer, zone: str, now: float
    ) -> list[Message]:
        settings = self._settings.click_and_collect
        messages: list[Message] = []
        for order_id, arrival in self._arrivals.items():
            order = self.orders.get(order_id)
            if order is None or arrival.at_counter or arrival.visit_id != visit.visit_id:
                continue
            if zone != (order.pickup_zone or settings.pickup_zone):
                continue
            arrival.at_counter = True
            messages.append(
                self._order_event(order_id, customer.customer_id, visit.visit_id, "at_counter", now)
            )
            if settings.staff_alerts:
                fields = {"order_id": order_id, "pickup_point": order.pickup_point}
                messages.append(
                    self._notify(customer, visit, "cnc.counter.staff", "service", now,
                                 settings.notification_ttl_s, fields, fields, staff=True)
                )  # fmt: skip
        return messages

    def _shelf_location(
        self, visit: OpenVisit, customer: Customer, now: float, zone: str | None
    ) -> list[Message]:
        settings = self._settings.shelf_location
        shopping_list = self.lists.get(customer.customer_id)
        if shopping_list is None:
            return []
        already = self._suggested[visit.visit_id]
        found: list[PlanogramItem] = []
        for entry in shopping_list.items:
            item = self.planogram.get(entry.sku)
            if item is None or not item.in_stock or entry.sku in already:
                continue  # never an item this store cannot hand over, never the same one twice
            if zone is not None and item.zone != zone:
                continue
            if all(f.sku != item.sku for f in found):
                found.append(item)
            if len(found) == settings.max_items:
                break
        if not found:
            return []
        language = self._settings.language
        listed = "; ".join(
            self._templates.render(
                "shelf.item", language, name=i.name, aisle=i.aisle or "-", shelf=i.shelf or "-"
            )
            for i in found
        )
        message = self._notify(
            customer, visit, "shelf.location", "marketing", now, settings.notification_ttl_s,
            {"skus": ",".join(i.sku for i in found)}, {"items": listed},
        )  # fmt: skip
        if isinstance(message, NotificationMessage):
            already.update(i.sku for i in found)
        return [message]

    def _thank_you(
        self, visit: OpenVisit, customer: Customer, receipts: list[ReceiptRecord], now: float
    ) -> Message:
        settings = self._settings.post_purchase
        language = self._settings.language
        offer = self._related_offer(receipts, now)
        data = {"receipt_id": receipts[-1].receipt_id, "feedback_url": settings.feedback_url}
        coupon_text = ""
        if offer is not None:
            valid_until = offer.valid_until.astimezone(self._tz).date().isoformat()
            coupon_text = self._templates.render(
                "post_purchase.coupon",
                language,
                coupon=offer.coupon,
                product=offer.product,
                valid_until=valid_until,
            )
            data.update(coupon=offer.coupon, offer_id=offer.offer_id)
        return self._notify(
            customer, visit, "post_purchase.thanks", "marketing", now, settings.notification_ttl_s, data,
            {"coupon_text": coupon_text, "feedback_url": settings.feedback_url},
        )  # fmt: skip

    def _related_offer(self, receipts: list[ReceiptRecord], now: float) -> OfferRecord | None:
        moment = datetime.fromtimestamp(now, self._tz)
        skus = {item.sku for receipt in receipts for item in receipt.items}
        categories = {item.category for receipt in receipts for item in receipt.items if item.category}
        for offer in sorted(self.offers.values(), key=lambda o: o.offer_id):
            if not offer.valid_from <= moment < offer.valid_until:
                continue
            if offer.match_sku in skus or offer.match_category in categories:
                return offer
        return None

    # ------------------------------------------------------------------ messages

    def _notify(
        self,
        customer: Customer,
        visit: OpenVisit,
        template: str,
        purpose: str,
        now: float,
        ttl_s: float,
        data: dict[str, str],
        fields: dict[str, str],
        *,
        staff: bool = False,
    ) -> Message:
        audience: Literal["customer", "staff"] = "staff" if staff else "customer"
        reason = self._guard.refusal(customer, purpose, visit.visit_id, now, staff=staff)
        if reason is not None:
            return SuppressedMessage(
                **self._envelope.at(now),
                customer_id=customer.customer_id, visit_id=visit.visit_id, template=template,
                audience=audience, reason=reason,
            )  # fmt: skip
        if not staff:
            self._guard.sent(customer.customer_id, visit.visit_id, now)
        language = self._settings.language
        return NotificationMessage(
            **self._envelope.at(now), audience=audience,
            channel="staff_device" if staff else "push", customer_id=customer.customer_id,
            visit_id=visit.visit_id, template=template, language=language,
            text=self._templates.render(template, language, **fields), data=data, expires=utc(now + ttl_s),
        )  # fmt: skip

    def _order_event(
        self, order_id: str, customer_id: str, visit_id: str | None, phase: OrderPhase, now: float,
        arrival_to_collection_s: float | None = None,
    ) -> OrderMessage:  # fmt: skip
        return OrderMessage(
            **self._envelope.at(now), order_id=order_id,
            customer_id=customer_id, visit_id=visit_id, phase=phase,
            arrival_to_collection_s=arrival_to_collection_s,
        )  # fmt: skip

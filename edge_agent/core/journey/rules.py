"""What the store does with a recognised shopper: the rules of the journey. Pure.

- Click-and-collect: a customer with a ready order starts a visit -> the customer is told where
  to collect, staff to prepare the order; reaching the pickup zone -> staff "customer at the
  counter"; HQ marking the order ``collected`` closes it with the arrival-to-collection time.
- Shelf location: on arrival (or on entering a zone) the in-stock items of the customer's list,
  with aisle and shelf, at most ``max_items``, never the same item twice in a visit.
- Post-purchase: a receipt of a customer who is in the store -> at the end of the visit a
  thank-you, a related-product coupon from ``offers`` and a feedback link.
- After the arrival (``collection``): a shopper kept waiting at the counter, or leaving without
  the order, is named to staff; assistance (``assist``) and queues (``queue``) likewise.
- Loyalty (``loyalty``, ``coupons``): a daily check-in, and a coupon this store issued coming
  back on a receipt (``redemption.v1``).
- Every customer notification's outcome (``outcomes``), and every rule that looked at a shopper
  and did not act says why (``skipped.v1``), beside the guards' refusals.

Every customer notification passes the guards (``guards``); one they stop becomes a
``suppressed.v1`` record with the reason. Orders, purchases and notifications carry the
``visit_id``, so HQ can lay them into one journey with the visit's zone and dwell events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
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
    CheckInMessage,
    Envelopes,
    Message,
    NotificationMessage,
    OrderMessage,
    PurchaseMessage,
    RedemptionMessage,
    SkippedMessage,
    StaffAlertMessage,
    SuppressedMessage,
    utc,
)
from edge_agent.core.identity import Customer
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.assist import AssistWatch
from edge_agent.core.journey.collection import Arrival, counter_wait, time_in_zone
from edge_agent.core.journey.coupons import IssuedCoupon, IssuedCoupons
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.journey.loyalty import CheckIns
from edge_agent.core.journey.outcomes import Outcomes
from edge_agent.core.journey.queue import QueueWatch
from edge_agent.core.journey.templates import Templates
from edge_agent.core.presence import OpenVisit
from edge_agent.core.settings import RulesSettings

OrderPhase = Literal["arrived", "at_counter", "collected", "counter_wait", "left_uncollected"]
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
        self._arrivals: dict[str, Arrival] = {}  # order id -> arrival of its customer
        self._suggested: defaultdict[str, set[str]] = defaultdict(set)  # visit id -> SKUs
        self._purchases: defaultdict[str, list[ReceiptRecord]] = defaultdict(list)  # visit id -> receipts
        # Each open visit's (rule, reason) already said, so a reason is logged once per visit.
        self._skipped: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
        self._coupons = IssuedCoupons()
        self._coupons_dropped: list[IssuedCoupon] = []  # forgotten past the bound: expired next tick
        self._outcomes = Outcomes(self._envelope)
        self._check_ins = CheckIns(timezone)
        self._assist = AssistWatch()
        self._queue = QueueWatch()
        self.retune(settings)

    def retune(self, settings: RulesSettings) -> None:
        self._settings = settings
        # The language keys are Literal["en", "it"], which Templates reads as plain strings.
        self._templates = Templates(cast(Mapping[str, Mapping[str, str]], settings.templates))
        self._guard.retune(settings.guards)

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
            messages += self._redemptions(receipt, None if visit is None else visit.visit_id, now)
        return messages

    def _redemptions(self, receipt: ReceiptRecord, visit_id: str | None, now: float) -> list[Message]:
        """A code on the receipt that this store gave the customer links receipt, notification
        and the visit that issued it; other codes (from other channels) are not ours to link."""
        messages: list[Message] = []
        for code in dict.fromkeys(receipt.coupons):
            coupon = self._coupons.redeem(receipt.customer_id, code, now)
            if coupon is None:
                continue
            messages.append(
                RedemptionMessage(
                    **self._envelope.at(now), receipt_id=receipt.receipt_id,
                    customer_id=receipt.customer_id, coupon=code,
                    notification_event_id=coupon.notification_event_id, template=coupon.template,
                    issued_visit_id=coupon.visit_id, issued_at=utc(coupon.issued_at), visit_id=visit_id,
                )
            )  # fmt: skip
            messages.append(
                self._outcomes.decided(
                    coupon.notification_event_id, coupon.customer_id, coupon.visit_id, coupon.template,
                    "redeemed", True, now, now - coupon.issued_at,
                )
            )  # fmt: skip
        return messages

    # ------------------------------------------------------------------ presence

    def visit_started(self, visit: OpenVisit, customer: Customer, now: float) -> list[Message]:
        messages = self._click_and_collect_arrival(visit, customer, now)
        shelf = self._settings.shelf_location
        if shelf.enabled and shelf.trigger == "visit":
            messages += self._shelf_location(visit, customer, now, zone=None)
        if self._settings.check_in.enabled:
            messages += self._check_in(visit, customer, now)
        return messages

    def zone_entered(self, visit: OpenVisit, customer: Customer, zone: str, now: float) -> list[Message]:
        messages: list[Message] = [
            *self._outcomes.zone_entered(customer.customer_id, visit.visit_id, zone, now),
            *self._click_and_collect_counter(visit, customer, zone, now),
        ]
        shelf = self._settings.shelf_location
        if shelf.enabled and shelf.trigger == "zone":
            messages += self._shelf_location(visit, customer, now, zone=zone)
        return messages

    def visit_ended(self, visit: OpenVisit, customer: Customer | None, now: float) -> list[Message]:
        self._suggested.pop(visit.visit_id, None)
        self._skipped.pop(visit.visit_id, None)
        self._assist.visit_ended(visit.visit_id)
        receipts = self._purchases.pop(visit.visit_id, [])
        messages: list[Message] = []
        if customer is not None:
            messages += self._left_uncollected(visit, customer, now)
        if customer is not None and receipts and self._settings.post_purchase.enabled:
            messages += self._thank_you(visit, customer, receipts, now)
        messages += self._outcomes.visit_ended(visit.visit_id, now)
        self._guard.visit_ended(visit.subject.id, visit.visit_id)
        return messages

    def tick(
        self,
        now: float,
        visits: Callable[[], Iterable[tuple[OpenVisit, Customer]]],
        zone_occupancy: Callable[[], Mapping[str, int]],
    ) -> list[Message]:
        """What time alone decides: counter waits, lingering shoppers, queues, outcomes whose
        window closed and coupons whose validity ended. The visits and the zones' occupancy are
        asked for only when a rule needs them (a tick comes every second)."""
        messages: list[Message] = []
        assist = self._settings.assist
        waiting = self._settings.counter_wait.enabled and any(
            not a.left and a.at_counter for a in self._arrivals.values()
        )
        if waiting or (assist.enabled and assist.zones):
            present = list(visits())
            if waiting:
                messages += self._counter_waits(present, now)
            for lingering in self._assist.due(assist, (v for v, _ in present), now):
                customer = next(c for v, c in present if v is lingering.visit)
                minutes = f"{(now - lingering.stay.entered_at) / 60:.0f}"
                fields = {"zone": lingering.stay.zone, "minutes": minutes}
                messages.append(
                    self._notify(customer, lingering.visit, "staff.assist", "service", now,
                                 assist.notification_ttl_s, {"zone": lingering.stay.zone}, fields, staff=True)
                )  # fmt: skip
        queue = self._settings.queue
        if queue.enabled and queue.zones:
            for alert in self._queue.update(queue, zone_occupancy(), now):
                language = self._settings.language
                text = self._templates.render("staff.queue", language, people=alert.people, zone=alert.zone)
                messages.append(
                    StaffAlertMessage(
                        **self._envelope.at(now), template="staff.queue", language=language, text=text,
                        zone=alert.zone, data={"zone": alert.zone, "people": str(alert.people)},
                        expires=utc(now + queue.notification_ttl_s),
                    )
                )  # fmt: skip
        messages += self._outcomes.expire(now)
        expired, self._coupons_dropped = [*self._coupons_dropped, *self._coupons.expired(now)], []
        for coupon in expired:
            messages.append(
                self._outcomes.decided(
                    coupon.notification_event_id, coupon.customer_id, coupon.visit_id, coupon.template,
                    "expired", False, now, now - coupon.issued_at,
                )
            )  # fmt: skip
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

    def restore_check_ins(self, check_ins: Iterable[tuple[str, float]]) -> None:
        """The check-ins kept across a restart (customer, when), oldest first."""
        for customer_id, ts in check_ins:
            self._check_ins.record(customer_id, self._check_ins.local_date(ts))

    def forget_customer(self, customer_id: str) -> None:
        """Erasure or consent withdrawn: nothing more about this customer from the rules."""
        self.lists.pop(customer_id, None)
        self._guard.forget(customer_id)
        self._coupons.forget(customer_id)
        self._outcomes.forget(customer_id)
        self._check_ins.forget(customer_id)
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
            self._arrivals[order.order_id] = Arrival(visit.visit_id, now)
            messages.append(
                self._order_event(order.order_id, customer.customer_id, visit.visit_id, "arrived", now)
            )
            fields = {"order_id": order.order_id, "pickup_point": order.pickup_point}
            data = {"order_id": order.order_id, "pickup_point": order.pickup_point}
            ttl = settings.notification_ttl_s
            pickup_zone = order.pickup_zone or settings.pickup_zone
            messages += self._sent(
                self._notify(customer, visit, "cnc.arrival.customer", "service", now, ttl, data, fields),
                now, kind="counter", zones=frozenset({pickup_zone} if pickup_zone else ()),
            )  # fmt: skip
            if settings.staff_alerts:
                messages.append(
                    self._notify(customer, visit, "cnc.arrival.staff", "service", now,
                                 settings.notification_ttl_s, data, fields, staff=True)
                )  # fmt: skip
        if not messages:
            messages += self._skip(visit, customer, "click_and_collect", "no order ready", now)
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
            return self._skip(visit, customer, "shelf_location", "no list", now)
        already = self._suggested[visit.visit_id]
        found: list[PlanogramItem] = []
        out_of_stock: list[str] = []
        elsewhere = suggested = 0
        for entry in shopping_list.items:
            item = self.planogram.get(entry.sku)
            if item is None or not item.in_stock or entry.sku in already:
                if item is not None and not item.in_stock:
                    out_of_stock.append(item.name)
                suggested += entry.sku in already
                continue  # never an item this store cannot hand over, never the same one twice
            if zone is not None and item.zone != zone:
                elsewhere += 1
                continue
            if all(f.sku != item.sku for f in found):
                found.append(item)
            if len(found) == settings.max_items:
                break
        if not found:
            return self._skip(
                visit,
                customer,
                "shelf_location",
                _nothing_to_suggest(out_of_stock, elsewhere, suggested, zone),
                now,
            )
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
        # The push worked if the shopper then went where it pointed (not the zone they are in).
        zones = frozenset(i.zone for i in found) - {visit.zone or ""}
        return self._sent(message, now, kind="zone", zones=zones, window_s=settings.outcome_window_s)

    def _thank_you(
        self, visit: OpenVisit, customer: Customer, receipts: list[ReceiptRecord], now: float
    ) -> list[Message]:
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
        message = self._notify(
            customer, visit, "post_purchase.thanks", "marketing", now, settings.notification_ttl_s, data,
            {"coupon_text": coupon_text, "feedback_url": settings.feedback_url},
        )  # fmt: skip
        if offer is not None and isinstance(message, NotificationMessage):
            self._issue(message, offer.coupon, now, offer.valid_until.timestamp())
            return [message]  # its outcome: the coupon redeemed or expired
        return self._sent(message, now)

    def _check_in(self, visit: OpenVisit, customer: Customer, now: float) -> list[Message]:
        """The day's first visit of a customer with marketing consent: loyalty check-in. Without
        consent it is refused (and audited) and not recorded, so consent given later in the day
        checks in at the next visit."""
        settings = self._settings.check_in
        local_date = self._check_ins.local_date(now)
        if self._check_ins.done_on(customer.customer_id, local_date):
            return []
        language = self._settings.language
        code = None
        coupon_text = ""
        valid_until = now + settings.coupon_valid_s
        if settings.coupon_prefix is not None:
            code = f"{settings.coupon_prefix}-{self._ids.random(4).hex().upper()}"
            coupon_text = self._templates.render(
                "loyalty.coupon", language, coupon=code,
                valid_until=datetime.fromtimestamp(valid_until, self._tz).date().isoformat(),
            )  # fmt: skip
        data = {"reward": settings.reward, **({"coupon": code} if code else {})}
        message = self._notify(
            customer, visit, "loyalty.check_in", "marketing", now, settings.notification_ttl_s, data,
            {"reward": settings.reward, "coupon_text": coupon_text},
        )  # fmt: skip
        if not customer.consent_marketing:
            return [message]  # never a check-in without consent
        self._check_ins.record(customer.customer_id, local_date)
        check_in = CheckInMessage(
            **self._envelope.at(now), customer_id=customer.customer_id, visit_id=visit.visit_id,
            local_date=local_date, reward=settings.reward,
        )  # fmt: skip
        if code is not None and isinstance(message, NotificationMessage):
            self._issue(message, code, now, valid_until)
            return [check_in, message]
        return [check_in, *self._sent(message, now)]

    # ------------------------------------------------------------------ after the arrival

    def _counter_waits(self, present: list[tuple[OpenVisit, Customer]], now: float) -> list[Message]:
        settings = self._settings.counter_wait
        default_zone = self._settings.click_and_collect.pickup_zone
        by_customer = {visit.subject.id: (visit, customer) for visit, customer in present}
        messages: list[Message] = []
        for order_id, arrival in self._arrivals.items():
            order = self.orders.get(order_id)
            found = None if order is None else by_customer.get(order.customer_id)
            if order is None or found is None or order.status != "ready" or arrival.left:
                continue
            pickup_zone = order.pickup_zone or default_zone
            if pickup_zone is None:
                continue
            visit, customer = found
            waited = counter_wait(arrival, visit, pickup_zone, settings.after_s, settings.repeat_s, now)
            if waited is None:
                continue
            messages.append(
                self._order_event(order_id, customer.customer_id, visit.visit_id, "counter_wait", now,
                                  wait_s=round(waited, 3))
            )  # fmt: skip
            if self._settings.click_and_collect.staff_alerts:
                fields = {
                    "order_id": order_id,
                    "pickup_point": order.pickup_point,
                    "wait_min": f"{waited / 60:.0f}",
                }
                messages.append(
                    self._notify(customer, visit, "staff.counter_wait", "service", now,
                                 self._settings.click_and_collect.notification_ttl_s,
                                 {"order_id": order_id, "wait_s": f"{waited:.0f}"}, fields, staff=True)
                )  # fmt: skip
        return messages

    def _left_uncollected(self, visit: OpenVisit, customer: Customer, now: float) -> list[Message]:
        settings = self._settings.left_uncollected
        if not settings.enabled:
            return []
        messages: list[Message] = []
        default_zone = self._settings.click_and_collect.pickup_zone
        for order_id, arrival in self._arrivals.items():
            order = self.orders.get(order_id)
            if order is None or order.status != "ready" or arrival.visit_id != visit.visit_id or arrival.left:
                continue
            arrival.left = True  # announced; a later visit is not re-announced (as before)
            pickup_zone = order.pickup_zone or default_zone
            in_store = visit.last_seen - visit.started_at
            at_counter = time_in_zone(visit, pickup_zone) if pickup_zone else 0.0
            messages.append(
                OrderMessage(
                    **self._envelope.at(now), order_id=order_id, customer_id=customer.customer_id,
                    visit_id=visit.visit_id, phase="left_uncollected",
                    time_in_store_s=round(in_store, 3), time_at_counter_s=round(at_counter, 3),
                )
            )  # fmt: skip
            if settings.staff_alerts:
                fields = {"order_id": order_id, "store_min": f"{in_store / 60:.0f}",
                          "counter_min": f"{at_counter / 60:.0f}"}  # fmt: skip
                data = {"order_id": order_id, "pickup_point": order.pickup_point}
                ttl = self._settings.click_and_collect.notification_ttl_s
                messages.append(
                    self._notify(customer, visit, "staff.left_uncollected", "service", now, ttl, data, fields,
                                 staff=True)
                )  # fmt: skip
        return messages

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
        arrival_to_collection_s: float | None = None, wait_s: float | None = None,
    ) -> OrderMessage:  # fmt: skip
        return OrderMessage(
            **self._envelope.at(now), order_id=order_id,
            customer_id=customer_id, visit_id=visit_id, phase=phase,
            arrival_to_collection_s=arrival_to_collection_s, wait_s=wait_s,
        )  # fmt: skip

    def _sent(
        self, message: Message, now: float, *, kind: str | None = None, zones: frozenset[str] = frozenset(),
        window_s: float = float("inf"),
    ) -> list[Message]:  # fmt: skip
        """The message, and how its outcome will be known: a customer notification waits for
        the shopper to enter one of ``zones`` (``kind`` "zone" or "counter"); one with nothing
        to wait for is ``not_measured`` at once."""
        if not isinstance(message, NotificationMessage) or message.audience != "customer":
            return [message]
        if kind is None or not zones:
            outcome = self._outcomes.decided(
                message.event_id, message.customer_id, message.visit_id, message.template,
                "not_measured", None, now, None,
            )  # fmt: skip
            return [message, outcome]
        return [message, *self._outcomes.expect(kind, message, zones, now, now + window_s)]

    def _issue(self, message: NotificationMessage, code: str, now: float, valid_until: float) -> None:
        """Remember a coupon a sent notification gave; its outcome comes with its redemption or
        expiry (a code forgotten to stay within the bound expires now)."""
        dropped = self._coupons.issue(
            IssuedCoupon(message.customer_id, code, message.event_id, message.template, message.visit_id,
                         now, valid_until)
        )  # fmt: skip
        self._coupons_dropped += dropped

    def _skip(
        self, visit: OpenVisit, customer: Customer, rule: str, reason: str, now: float
    ) -> list[Message]:
        """Why a rule did not act for this shopper, once per visit and reason."""
        said = self._skipped[visit.visit_id]
        if (rule, reason) in said:
            return []
        said.add((rule, reason))
        return [
            SkippedMessage(
                **self._envelope.at(now), customer_id=customer.customer_id, visit_id=visit.visit_id,
                rule=rule, reason=reason,
            )
        ]  # fmt: skip


def _nothing_to_suggest(out_of_stock: list[str], elsewhere: int, suggested: int, zone: str | None) -> str:
    """Why a shelf-location push found nothing to say, in support's words."""
    if elsewhere:
        return f"no listed item shelved in {zone}"
    if out_of_stock:
        return "out of stock: " + ", ".join(sorted(set(out_of_stock)))
    if suggested:
        return "every listed item already suggested in this visit"
    return "nothing on the list this store sells"

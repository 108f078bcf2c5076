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
  and did not act says why (``skipped.v1``, the journey log's only), beside the guards' refusals.

Every customer notification passes the guards (``guards``); one they stop becomes a
``suppressed.v1`` record with the reason. Orders, purchases and notifications carry the
``visit_id``, so HQ can lay them into one journey with the visit's zone and dwell events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.core.const import RECEIPTS_REMEMBERED
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
    PurchaseMessage,
)
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey.acting import Acts
from edge_agent.core.journey.assist import AssistWatch
from edge_agent.core.journey.collection import Arrival, Order, counter_waits, left_uncollected
from edge_agent.core.journey.coupons import redemption_message
from edge_agent.core.journey.durable import ARRIVAL, COUPON, HELD, OUTCOME, StateChange
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.journey.loyalty import CheckIns
from edge_agent.core.journey.queue import QueueWatch
from edge_agent.core.presence import OpenVisit
from edge_agent.core.registry import Customer
from edge_agent.core.settings import RulesSettings

__all__ = ["JOURNEY_RULES", "JourneyRules", "Order", "VisitOf"]  # Order: the store core's import

# Where a receipt's customer is in the store now (None: not in the store).
VisitOf = Callable[[str], OpenVisit | None]
# The rule that applies each downlink kind the journey rules hold (AppliedBy.JOURNEY).
JOURNEY_RULES: Handlers[JourneyRules, [float, VisitOf], list[Message]] = Handlers("journey rules")


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
        self._receipts_seen: dict[str, None] = {}  # insertion-ordered, RECEIPTS_REMEMBERED at most
        self._arrivals: dict[str, Arrival] = {}  # order id -> arrival of its customer
        self._arrivals_kept: dict[str, dict[str, Any]] = {}  # as the state store last had them
        self._suggested: defaultdict[str, set[str]] = defaultdict(set)  # visit id -> SKUs
        self._purchases: defaultdict[str, list[ReceiptRecord]] = defaultdict(list)  # visit id -> receipts
        self._acts = Acts(self._envelope, self._guard, settings)
        self._check_ins = CheckIns(timezone, self._acts.journal)
        self._assist = AssistWatch()
        self._queue = QueueWatch()
        self.retune(settings)

    def retune(self, settings: RulesSettings) -> None:
        self._settings = settings
        self._acts.retune(settings)
        self._guard.retune(settings.guards)

    def shift(self, delta_s: float) -> None:
        """A wall-clock step the agent followed: every time the rules hold moves with the clock
        (the guards', arrivals and their counter-wait reminders, assistance and queue timers,
        check-ins and held messages, pending outcomes, issued coupons), so a wait measured across
        it keeps its length and nothing fires early or an hour late; the kept rows (``durable``)
        are rewritten with the new times at the next commit."""
        self._guard.shift(delta_s)
        for arrival in self._arrivals.values():
            arrival.at += delta_s
            if arrival.last_wait_alert is not None:
                arrival.last_wait_alert += delta_s
        self._assist.shift(delta_s)
        self._queue.shift(delta_s)
        self._check_ins.shift(delta_s)
        self._acts.outcomes.shift(delta_s)
        self._acts.coupons.shift(delta_s)

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
                    self._acts.order_event(
                        record.order_id, record.customer_id, arrival.visit_id, "collected", now,
                        arrival_to_collection_s=round(now - arrival.at, 3),
                    )
                )  # fmt: skip
        return messages

    @JOURNEY_RULES.handles(ReceiptsDownlink)
    def _apply_receipts(self, downlink: ReceiptsDownlink, now: float, visit_of: VisitOf) -> list[Message]:
        messages: list[Message] = []
        for receipt in downlink.receipts:
            if receipt.receipt_id in self._receipts_seen:
                continue  # HQ resent it
            self._receipts_seen[receipt.receipt_id] = None
            if len(self._receipts_seen) > RECEIPTS_REMEMBERED:
                del self._receipts_seen[next(iter(self._receipts_seen))]
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
            coupon = self._acts.coupons.redeem(receipt.customer_id, code, now)
            if coupon is None:
                continue
            messages.append(redemption_message(self._envelope, coupon, receipt.receipt_id, visit_id, now))
            messages.append(
                self._acts.outcomes.decided(
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
            messages += self._check_ins.check_in(
                self._acts,
                self._settings.check_in,
                visit,
                customer,
                now,
                lambda: self._ids.random(4).hex().upper(),
            )
        return messages

    def zone_entered(self, visit: OpenVisit, customer: Customer, zone: str, now: float) -> list[Message]:
        messages: list[Message] = [
            *self._acts.outcomes.zone_entered(customer.customer_id, visit.visit_id, zone, now),
            *self._click_and_collect_counter(visit, customer, zone, now),
        ]
        shelf = self._settings.shelf_location
        if shelf.enabled and shelf.trigger == "zone":
            messages += self._shelf_location(visit, customer, now, zone=zone)
        return messages

    def visit_ended(self, visit: OpenVisit, customer: Customer | None, now: float) -> list[Message]:
        self._suggested.pop(visit.visit_id, None)
        self._assist.visit_ended(visit.visit_id)
        receipts = self._purchases.pop(visit.visit_id, [])
        messages: list[Message] = []
        if customer is not None:
            messages += left_uncollected(
                self._acts, self._settings, self._arrivals, self.orders, visit, customer, now
            )
        if customer is not None and receipts and self._settings.post_purchase.enabled:
            messages += self._thank_you(visit, customer, receipts, now)
        messages += self._check_ins.visit_ended(self._acts, visit.visit_id, now)
        messages += self._acts.visit_ended(visit.visit_id, now)
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
        held = self._check_ins.holding
        if waiting or (assist.enabled and assist.zones) or held:
            present = list(visits())
            if held:
                messages += self._check_ins.release(self._acts, self._settings.check_in, present, now)
            if waiting:
                messages += counter_waits(
                    self._acts, self._settings, self._arrivals, self.orders, present, now
                )
            messages += self._assist.alerts(self._acts, assist, present, now)
        queue = self._settings.queue
        if queue.enabled and queue.zones:
            messages += self._queue.alerts(self._acts, queue, zone_occupancy(), now)
        messages += self._acts.outcomes.expire(now)
        messages += self._acts.coupons_expired(now)
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
            self._check_ins.record(customer_id, ts)

    def state_changed(self) -> bool:
        """Whether ``state_changes`` has anything to say (cheap: asked at every idle commit)."""
        return bool(len(self._acts.journal)) or self._arrivals.keys() != self._arrivals_kept.keys()

    def state_changes(self) -> list[StateChange]:
        """What of the rules' promises in flight changed since last asked (``durable``): coupons
        and outcomes as they were noted, arrivals by comparing them with what was kept (a few
        orders at most; their flags change inside the collection rules)."""
        journal = self._acts.journal
        for order_id, arrival in self._arrivals.items():
            record = asdict(arrival)
            if self._arrivals_kept.get(order_id) != record:
                self._arrivals_kept[order_id] = record
                order = self.orders.get(order_id)
                journal.put(ARRIVAL, order_id, "" if order is None else order.customer_id, record)
        for order_id in self._arrivals_kept.keys() - self._arrivals.keys():
            del self._arrivals_kept[order_id]
            journal.drop(ARRIVAL, order_id, "")
        return journal.drain()

    def state_not_kept(self, changes: list[StateChange]) -> None:
        """``changes`` were not committed: they are due again at the next commit."""
        self._acts.journal.undo(changes)

    def restore_state(self, kept: Iterable[StateChange], open_visits: Collection[str]) -> None:
        """The promises kept at the last stop: coupons still redeemable, outcomes still pending
        (those of a visit that did not survive the restart are decided at the first tick), the
        arrivals of orders still ready and the check-in messages still held."""
        rows = list(kept)
        by_kind: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row.record is not None:
                by_kind[row.kind].append(row.record)
        self._acts.restore_coupons(by_kind[COUPON])
        self._acts.outcomes.restore(by_kind[OUTCOME], open_visits)
        for row in rows:
            if row.kind == ARRIVAL and row.record is not None:
                self._arrivals_kept[row.key] = row.record  # one no longer wanted is deleted at once
                order = self.orders.get(row.key)
                if order is not None and order.status == "ready":
                    self._arrivals[row.key] = Arrival(**row.record)
        self._check_ins.restore_held(by_kind[HELD], open_visits)

    def restore_sent(
        self, sent: Iterable[tuple[str, str | None, float]], open_visits: Collection[str]
    ) -> None:
        """Customer notifications of the last day before a restart (customer, visit, when;
        oldest first): the guards' gap and caps count them as if the agent had never stopped."""
        for customer_id, visit_id, at in sent:
            self._guard.restore(customer_id, visit_id if visit_id in open_visits else None, at)

    def forget_customer(self, customer_id: str, visit_id: str | None = None) -> None:
        """Erasure or consent withdrawn: nothing more about this customer from the rules
        (``visit_id``: their open visit, dropped without ending)."""
        if visit_id is not None:
            self._purchases.pop(visit_id, None)
            self._suggested.pop(visit_id, None)
            self._assist.visit_ended(visit_id)
            self._acts.forget_visit(visit_id)
        self.lists.pop(customer_id, None)
        self._guard.forget(customer_id)
        self._acts.forget(customer_id)
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
                self._acts.order_event(order.order_id, customer.customer_id, visit.visit_id, "arrived", now)
            )
            fields = {"order_id": order.order_id, "pickup_point": order.pickup_point}
            data = {"order_id": order.order_id, "pickup_point": order.pickup_point}
            ttl = settings.notification_ttl_s
            pickup_zone = order.pickup_zone or settings.pickup_zone
            messages += self._acts.sent(
                self._acts.notify(customer, visit, "cnc.arrival.customer", "service", now, ttl, data, fields),
                now, kind="counter", zones=frozenset({pickup_zone} if pickup_zone else ()),
            )  # fmt: skip
            if settings.staff_alerts:
                messages.append(
                    self._acts.notify(customer, visit, "cnc.arrival.staff", "service", now,
                                 settings.notification_ttl_s, data, fields, staff=True)
                )  # fmt: skip
        if not messages:
            messages += self._acts.skip(visit, customer, "click_and_collect", "no order ready", now)
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
                self._acts.order_event(order_id, customer.customer_id, visit.visit_id, "at_counter", now)
            )
            if settings.staff_alerts:
                fields = {"order_id": order_id, "pickup_point": order.pickup_point}
                messages.append(
                    self._acts.notify(customer, visit, "cnc.counter.staff", "service", now,
                                 settings.notification_ttl_s, fields, fields, staff=True)
                )  # fmt: skip
        return messages

    def _shelf_location(
        self, visit: OpenVisit, customer: Customer, now: float, zone: str | None
    ) -> list[Message]:
        settings = self._settings.shelf_location
        shopping_list = self.lists.get(customer.customer_id)
        if shopping_list is None:
            return self._acts.skip(visit, customer, "shelf_location", "no list", now)
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
            return self._acts.skip(
                visit,
                customer,
                "shelf_location",
                _nothing_to_suggest(out_of_stock, elsewhere, suggested, zone),
                now,
            )
        language = self._settings.language
        listed = "; ".join(
            self._acts.templates.render(
                "shelf.item", language, name=i.name, aisle=i.aisle or "-", shelf=i.shelf or "-"
            )
            for i in found
        )
        message = self._acts.notify(
            customer, visit, "shelf.location", "marketing", now, settings.notification_ttl_s,
            {"skus": ",".join(i.sku for i in found)}, {"items": listed},
        )  # fmt: skip
        if isinstance(message, NotificationMessage):
            already.update(i.sku for i in found)
        # The push worked if the shopper then went where it pointed (not the zone they are in).
        zones = frozenset(i.zone for i in found) - {visit.zone or ""}
        return self._acts.sent(message, now, kind="zone", zones=zones, window_s=settings.outcome_window_s)

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
            coupon_text = self._acts.templates.render(
                "post_purchase.coupon",
                language,
                coupon=offer.coupon,
                product=offer.product,
                valid_until=valid_until,
            )
            data.update(coupon=offer.coupon, offer_id=offer.offer_id)
        message = self._acts.notify(
            customer, visit, "post_purchase.thanks", "marketing", now, settings.notification_ttl_s, data,
            {"coupon_text": coupon_text, "feedback_url": settings.feedback_url},
        )  # fmt: skip
        if offer is not None and isinstance(message, NotificationMessage):
            # its outcome: the coupon redeemed or expired
            return self._acts.issue(message, offer.coupon, now, offer.valid_until.timestamp())
        return self._acts.sent(message, now)

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


def _nothing_to_suggest(out_of_stock: list[str], elsewhere: int, suggested: int, zone: str | None) -> str:
    """Why a shelf-location push found nothing to say, in support's words."""
    if elsewhere:
        return f"no listed item shelved in {zone}"
    if out_of_stock:
        return "out of stock: " + ", ".join(sorted(set(out_of_stock)))
    if suggested:
        return "every listed item already suggested in this visit"
    return "nothing on the list this store sells"

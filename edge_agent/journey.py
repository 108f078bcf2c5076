"""What the store does when a recognised shopper arrives. Pure; returns messages to send.

The first rule is click-and-collect arrival: a customer with a ready order walks in, so the
customer is told where to collect and staff are told to bring the order out. Each order is
announced once; the notification expires when it could no longer help (TTL).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.config import ClickAndCollectSettings
from edge_agent.events import NotificationMessage, utc
from edge_agent.identity import Customer
from edge_agent.ids import EventIdFactory
from edge_agent.presence import OpenVisit


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    customer_id: str
    status: str  # ready | collected | cancelled
    pickup_point: str


class ClickAndCollect:
    def __init__(self, settings: ClickAndCollectSettings, store_id: str, ids: EventIdFactory) -> None:
        self._settings = settings
        self._store_id = store_id
        self._ids = ids
        self._announced: set[str] = set()

    def on_visit_started(
        self, visit: OpenVisit, customer: Customer, orders: list[Order], now: float
    ) -> list[NotificationMessage]:
        if not self._settings.enabled or not customer.consent_service:
            return []
        messages: list[NotificationMessage] = []
        for order in orders:
            if order.status != "ready" or order.order_id in self._announced:
                continue
            self._announced.add(order.order_id)
            messages.append(
                self._notify(
                    "customer", "cnc.arrival.customer", visit, order, now,
                    f"Welcome! Your order {order.order_id} is ready: collect it at {order.pickup_point}.",
                )
            )  # fmt: skip
            if self._settings.staff_alerts:
                messages.append(
                    self._notify(
                        "staff", "cnc.arrival.staff", visit, order, now,
                        f"Customer for order {order.order_id} has arrived: "
                        f"prepare it at {order.pickup_point}.",
                    )
                )  # fmt: skip
        return messages

    def retune(self, settings: ClickAndCollectSettings) -> None:
        self._settings = settings

    def forget_order(self, order_id: str) -> None:
        self._announced.discard(order_id)

    def _notify(
        self, audience: str, template: str, visit: OpenVisit, order: Order, now: float, text: str
    ) -> NotificationMessage:
        return NotificationMessage(
            event_id=self._ids.new(now),
            store_id=self._store_id,
            ts=utc(now),
            audience=audience,
            customer_id=order.customer_id,
            visit_id=visit.visit_id,
            template=template,
            language="en",
            text=text,
            data={"order_id": order.order_id, "pickup_point": order.pickup_point},
            expires=utc(now + self._settings.notification_ttl_s),
        )

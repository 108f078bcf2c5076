"""How the journey rules speak, in one place: notifications through the guards, order events,
outcomes, coupons issued, and why a rule did not act. Pure; time is an argument.

Every rule module (``rules``, ``collection``, ``assist``, ``queue``, ``loyalty``) makes its
messages here, so a customer notification can only leave through the guards (a refusal is a
``suppressed.v1``), every customer notification declares how its outcome will be known, and a
rule's "did not act" is said once per visit and reason (the journey log's, never published).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Literal, cast

from edge_agent.core.events import (
    Envelopes,
    Message,
    NotificationMessage,
    OrderMessage,
    OutcomeMessage,
    SkippedMessage,
    StaffAlertMessage,
    SuppressedMessage,
    utc,
)
from edge_agent.core.journey.coupons import IssuedCoupon, IssuedCoupons
from edge_agent.core.journey.durable import Journal
from edge_agent.core.journey.guards import NotificationGuard
from edge_agent.core.journey.outcomes import Outcomes
from edge_agent.core.journey.templates import Templates
from edge_agent.core.presence import OpenVisit
from edge_agent.core.registry import Customer
from edge_agent.core.settings import RulesSettings

OrderPhase = Literal["arrived", "at_counter", "collected", "counter_wait", "left_uncollected"]


class Acts:
    def __init__(self, envelope: Envelopes, guard: NotificationGuard, settings: RulesSettings) -> None:
        self.envelope = envelope
        self._guard = guard
        # Coupons and pending outcomes are promises to HQ: each change is noted for the state store.
        self.journal = Journal()
        self.outcomes = Outcomes(envelope, self.journal)
        self.coupons = IssuedCoupons(self.journal)
        self._coupons_dropped: list[IssuedCoupon] = []  # forgotten past the bound: expired next tick
        # Each open visit's (rule, reason) already said, so a reason is logged once per visit.
        self._skipped: defaultdict[str, set[tuple[str, str]]] = defaultdict(set)
        self.retune(settings)

    def retune(self, settings: RulesSettings) -> None:
        self.language = settings.language
        # The language keys are Literal["en", "it"], which Templates reads as plain strings.
        self.templates = Templates(cast(Mapping[str, Mapping[str, str]], settings.templates))

    def notify(
        self,
        customer: Customer,
        visit: OpenVisit,
        template: str,
        purpose: str,
        now: float,
        ttl_s: float,
        data: dict[str, str],
        fields: Mapping[str, object],
        *,
        staff: bool = False,
    ) -> Message:
        """A notification the guards let through, or the ``suppressed.v1`` saying why not."""
        audience: Literal["customer", "staff"] = "staff" if staff else "customer"
        reason = self._guard.refusal(customer, purpose, visit.visit_id, now, staff=staff)
        if reason is not None:
            return self.suppressed(customer.customer_id, visit.visit_id, template, audience, reason, now)
        if not staff:
            self._guard.sent(customer.customer_id, visit.visit_id, now)
        language = self.language
        return NotificationMessage(
            **self.envelope.at(now), audience=audience,
            channel="staff_device" if staff else "push", customer_id=customer.customer_id,
            visit_id=visit.visit_id, template=template, language=language,
            text=self.templates.render(template, language, **fields), data=data, expires=utc(now + ttl_s),
        )  # fmt: skip

    def suppressed(
        self, customer_id: str, visit_id: str, template: str, audience: Literal["customer", "staff"],
        reason: str, now: float,
    ) -> SuppressedMessage:  # fmt: skip
        """The audit record of a notification that did not go, and why."""
        return SuppressedMessage(
            **self.envelope.at(now), customer_id=customer_id, visit_id=visit_id, template=template,
            audience=audience, reason=reason,
        )  # fmt: skip

    def staff_alert(
        self, template: str, zone: str | None, now: float, ttl_s: float, data: dict[str, str],
        fields: Mapping[str, object],
    ) -> StaffAlertMessage:  # fmt: skip
        """An alert about the store, naming no customer (staff alerts pass no guard)."""
        return StaffAlertMessage(
            **self.envelope.at(now), template=template, language=self.language,
            text=self.templates.render(template, self.language, **fields), zone=zone, data=data,
            expires=utc(now + ttl_s),
        )  # fmt: skip

    def order_event(
        self, order_id: str, customer_id: str, visit_id: str | None, phase: OrderPhase, now: float, *,
        arrival_to_collection_s: float | None = None, wait_s: float | None = None,
        time_in_store_s: float | None = None, time_at_counter_s: float | None = None,
    ) -> OrderMessage:  # fmt: skip
        return OrderMessage(
            **self.envelope.at(now), order_id=order_id, customer_id=customer_id, visit_id=visit_id,
            phase=phase, arrival_to_collection_s=arrival_to_collection_s, wait_s=wait_s,
            time_in_store_s=time_in_store_s, time_at_counter_s=time_at_counter_s,
        )  # fmt: skip

    def sent(
        self, message: Message, now: float, *, kind: str | None = None, zones: frozenset[str] = frozenset(),
        window_s: float = float("inf"),
    ) -> list[Message]:  # fmt: skip
        """The message, and how its outcome will be known: a customer notification waits for
        the shopper to enter one of ``zones`` (``kind`` "zone" or "counter"); one with nothing
        to wait for is ``not_measured`` at once."""
        if not isinstance(message, NotificationMessage) or message.audience != "customer":
            return [message]
        if kind is None or not zones:
            outcome = self.outcomes.decided(
                message.event_id, message.customer_id, message.visit_id, message.template,
                "not_measured", None, now, None,
            )  # fmt: skip
            return [message, outcome]
        return [message, *self.outcomes.expect(kind, message, zones, now, now + window_s)]

    def issue(self, message: NotificationMessage, code: str, now: float, valid_until: float) -> list[Message]:
        """Remember a coupon a sent notification gave; its outcome comes with its redemption or
        expiry (a code forgotten to stay within the bound expires at the next tick). Returns the
        message and, when it gives again a code an earlier notification gave and the customer
        has not redeemed, that one's outcome: ``superseded``, since a redemption now counts for
        this one and whether the earlier one worked can no longer be told."""
        replaced, dropped = self.coupons.issue(
            IssuedCoupon(message.customer_id, code, message.event_id, message.template, message.visit_id,
                         now, valid_until)
        )  # fmt: skip
        self._coupons_dropped += dropped
        if replaced is None:
            return [message]
        superseded = self.outcomes.decided(
            replaced.notification_event_id, replaced.customer_id, replaced.visit_id, replaced.template,
            "superseded", None, now, now - replaced.issued_at,
        )  # fmt: skip
        return [message, superseded]

    def restore_coupons(self, records: list[dict[str, object]]) -> None:
        """The codes kept across a restart (any past the bound expire at the next tick)."""
        self._coupons_dropped += self.coupons.restore(records)

    def coupons_expired(self, now: float) -> list[OutcomeMessage]:
        for coupon in self._coupons_dropped:
            self.coupons.gone(coupon)
        expired, self._coupons_dropped = [*self._coupons_dropped, *self.coupons.expired(now)], []
        return [
            self.outcomes.decided(
                c.notification_event_id, c.customer_id, c.visit_id, c.template, "expired", False, now,
                now - c.issued_at,
            )
            for c in expired
        ]  # fmt: skip

    def skip(self, visit: OpenVisit, customer: Customer, rule: str, reason: str, now: float) -> list[Message]:
        """Why a rule did not act for this shopper, once per visit and reason."""
        said = self._skipped[visit.visit_id]
        if (rule, reason) in said:
            return []
        said.add((rule, reason))
        return [
            SkippedMessage(
                **self.envelope.at(now), customer_id=customer.customer_id, visit_id=visit.visit_id,
                rule=rule, reason=reason,
            )
        ]  # fmt: skip

    def visit_ended(self, visit_id: str, now: float) -> list[OutcomeMessage]:
        self._skipped.pop(visit_id, None)
        return self.outcomes.visit_ended(visit_id, now)

    def forget_visit(self, visit_id: str) -> None:
        """A visit dropped without ending (erasure, consent withdrawn): its reasons go too."""
        self._skipped.pop(visit_id, None)

    def forget(self, customer_id: str) -> None:
        self.coupons.forget(customer_id)
        self.outcomes.forget(customer_id)
        for coupon in [c for c in self._coupons_dropped if c.customer_id == customer_id]:
            self.coupons.gone(coupon)
        self._coupons_dropped = [c for c in self._coupons_dropped if c.customer_id != customer_id]
